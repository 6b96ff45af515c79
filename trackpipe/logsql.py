"""SQL over one project's day logs, with DuckDB: what ``trackpipe query`` runs.

The day logs are JSON lines, one folder per receipt day (``processors.daylog``); DuckDB reads
them in place, in parallel, only the members a query names. Views, all times UTC:

- ``lines``: every logged request (``type``: ce, identify, update, ping, …);
- ``actions``: the tracked actions (``type = 'ce'``), with ``person``: the profile that
  survived every merge of the one the action was logged under (group by it to count people,
  not devices), and ``campaign`` (``properties->>'campaign_name'``);
- ``visits``: one row per visit, from its lines (start, end, actions, its ``cs_`` properties);
- ``merges``: which profile was folded into which, when and by which identifier.

A query is one ``SELECT``, and nothing else is run (not even ``EXPLAIN ANALYZE``, which runs
what it explains): it cannot write. It can read this project's folder and nothing else
(DuckDB's file access is limited to it, without a temporary folder, and its configuration is
locked before the query runs): a shared machine's other files and projects stay out of its
reach. Merges are read as a set: one logged twice (a retried write) counts once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from processors.retention import DAY
from processors.timeline import MAX_MERGE_CHAIN, MERGES

LINE_COLUMNS = {
    "id": "VARCHAR", "type": "VARCHAR", "event": "VARCHAR", "profile": "VARCHAR",
    "visitor_key": "VARCHAR", "visit": "VARCHAR", "event_ms": "BIGINT",
    "received_ms": "BIGINT", "clock": "VARCHAR", "future": "BOOLEAN", "ip": "VARCHAR",
    "user_agent": "VARCHAR", "cookie_assigned": "BOOLEAN", "over_quota": "BOOLEAN",
    "browser": "VARCHAR", "os": "VARCHAR", "device": "VARCHAR", "properties": "JSON",
    "visitor_properties": "JSON", "visit_properties": "JSON", "org_properties": "JSON",
    "builtins": "JSON", "meta": "JSON",
}
MERGE_COLUMNS = {"source": "VARCHAR", "into": "VARCHAR", "identifier": "VARCHAR",
                 "visitor_key": "VARCHAR", "at_ms": "BIGINT"}
# Each merged profile → the profile its chain of merges ends in (a cycle, which would be a
# bug, stops at MAX_MERGE_CHAIN), computed once per query.
SURVIVORS = f"""
CREATE TABLE survivors AS
    WITH RECURSIVE chain(profile, person, depth) AS (
        SELECT DISTINCT source, "into", 1 FROM merges
        UNION
        SELECT c.profile, m."into", c.depth + 1 FROM chain c JOIN merges m ON m.source = c.person
        WHERE c.depth < {MAX_MERGE_CHAIN})
    SELECT profile, arg_max(person, depth) AS person FROM chain GROUP BY profile;
"""
VIEWS = """
CREATE VIEW actions AS
    SELECT l.id, l.event, l.profile, coalesce(s.person, l.profile) AS person, l.visitor_key,
           l.visit, epoch_ms(l.event_ms) AS event_time, epoch_ms(l.received_ms) AS received_time,
           CAST(epoch_ms(l.event_ms) AS DATE) AS day, l.properties,
           l.properties->>'campaign_name' AS campaign, l.visitor_properties, l.visit_properties,
           l.browser, l.os, l.device, l.ip, l.user_agent, l.future, l.over_quota,
           l.event_ms, l.received_ms
    FROM lines l LEFT JOIN survivors s USING (profile) WHERE l.type = 'ce';
CREATE VIEW visits AS
    SELECT l.visit, any_value(l.visitor_key) AS visitor_key, any_value(l.profile) AS profile,
           any_value(coalesce(s.person, l.profile)) AS person,
           epoch_ms(min(l.received_ms)) AS start_time, epoch_ms(max(l.received_ms)) AS end_time,
           (max(l.received_ms) - min(l.received_ms)) / 1000.0 AS duration_s,
           count(*) FILTER (WHERE l.type = 'ce') AS actions,
           arg_max(l.visit_properties, l.received_ms) AS properties
    FROM lines l LEFT JOIN survivors s USING (profile)
    WHERE l.visit IS NOT NULL GROUP BY l.visit;
"""


class QueryError(Exception):
    """A query that cannot run, in one line."""


def day_files(folder: Path, pattern: str, first: str | None, last: str | None) -> list[Path]:
    """The files matching ``pattern`` of the receipt days in [first, last]."""
    if not folder.is_dir():
        return []
    days = sorted(d for d in folder.iterdir() if DAY.fullmatch(d.name)
                  and (first is None or d.name >= first) and (last is None or d.name <= last))
    return [path for day in days for path in sorted(day.glob(pattern))]


def connect(folder: Path, first: str | None = None, last: str | None = None
            ) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the project's views over the days in [first, last]."""
    try:
        con = duckdb.connect(config={"threads": 2})
        con.execute("SET temp_directory = ''")  # else DuckDB allows its temporary folder too
        lines = day_files(folder, "part-*.jsonl", first, last)
        con.execute(f"CREATE VIEW lines AS {_reader(lines, LINE_COLUMNS)}")
        merges = day_files(folder, MERGES, None, last)  # earlier merges still join profiles
        con.execute(f"CREATE VIEW merges AS SELECT DISTINCT source, \"into\", identifier, "
                    f"visitor_key, epoch_ms(at_ms) AS merge_time "
                    f"FROM ({_reader(merges, MERGE_COLUMNS)})")
        con.execute(SURVIVORS)
        con.execute(VIEWS)
        # From here on, the query's own reach: this folder, read only.
        con.execute(f"SET allowed_directories = [{_literal(str(folder.resolve()) + '/')}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except (duckdb.Error, OSError) as exc:  # e.g. a day removed by retention meanwhile
        raise QueryError(f"cannot read the day logs: {_first_line(exc)}") from None
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of one read-only statement."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_first_line(exc)) from None
    if len(statements) != 1:
        raise QueryError("give one SQL statement")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError("only SELECT queries are run (the day logs are read, never changed)")
    try:
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description or ()], cursor.fetchall()
    except duckdb.Error as exc:
        raise QueryError(_first_line(exc)) from None


def _reader(files: list[Path], columns: dict[str, str]) -> str:
    names = ", ".join(f'"{name}"' for name in columns)
    if not files:  # no day yet: the same columns, no rows
        return "SELECT " + ", ".join(f'CAST(NULL AS {kind}) AS "{name}"'
                                     for name, kind in columns.items()) + " WHERE false"
    spec = ", ".join(f"{_literal(name)}: {_literal(kind)}" for name, kind in columns.items())
    paths = ", ".join(_literal(str(path)) for path in files)
    return (f"SELECT {names} FROM read_json([{paths}], format = 'newline_delimited', "
            f"columns = {{{spec}}}, ignore_errors = true)")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
