"""SQL over one project's day logs, with DuckDB: what ``trackpipe query`` runs.

The day logs are JSON lines, one folder per receipt day (``logstore.layout``); DuckDB reads
them in place, in parallel, only the members a query names. Views, all times UTC:

- ``lines``: every logged request (``type``: ce, identify, update, ping, …);
- ``actions``: the tracked actions (``type = 'ce'``), with ``person``: the profile that names
  the person the action's profile is part of by merges (the survivor of every merge; group by
  it to count people, not devices), and ``campaign`` (``properties->>'campaign_name'``);
- ``visits``: one row per visit, from its lines (start, end, actions, its ``cs_`` properties,
  and the browser, device and location of the request that started it);
- ``merges``: which profile was folded into which, when and by which identifier.

A query is one ``SELECT``, and nothing else is run (not even ``EXPLAIN ANALYZE``, which runs
what it explains): it cannot write. It can read this project's folder and nothing else
(DuckDB's file access is limited to it, without a temporary folder, and its configuration is
locked before the query runs): a shared machine's other files and projects stay out of its
reach. DuckDB installs and loads no extension (what it needs is built in). Merges are read as a
set: one logged twice (a retried write) counts once, and ``person`` follows the rule of
``trackpipe timeline`` (``logstore.timeline.persons``).

Its bounds, set before the configuration is locked (``Views``): DuckDB's memory, a time limit
(a timer interrupts the connection: building the views, running and reading included), and
rows read in chunks up to a cap, so a wide result is never held whole. Days past the project's
retention are not read, and lines whose event time is older than it are not in the views, as a
timeline never shows them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from logstore.layout import DAY, MERGES, PARTS
from logstore.lines import COLUMNS
from logstore.timeline import persons
from runtime.settings import Settings
from schemas.action import DERIVED

CHUNK_ROWS = 1000  # rows fetched at a time
MERGE_COLUMNS = {"source": "VARCHAR", "into": "VARCHAR", "identifier": "VARCHAR",
                 "visitor_key": "VARCHAR", "at_ms": "BIGINT"}
VIEWS = """
CREATE VIEW actions AS
    SELECT l.id, l.event, l.profile, coalesce(s.person, l.profile) AS person, l.visitor_key,
           l.visit, epoch_ms(l.event_ms) AS event_time, epoch_ms(l.received_ms) AS received_time,
           CAST(epoch_ms(l.event_ms) AS DATE) AS day, l.properties,
           l.properties->>'campaign_name' AS campaign, l.visitor_properties, l.visit_properties,
           l.browser, l.os, l.device, l.ip, l.user_agent, l.future, l.over_quota,
           l.event_ms, l.received_ms, {derived}
    FROM lines l LEFT JOIN survivors s USING (profile) WHERE l.type = 'ce';
CREATE VIEW visits AS
    SELECT l.visit, any_value(l.visitor_key) AS visitor_key, any_value(l.profile) AS profile,
           any_value(coalesce(s.person, l.profile)) AS person,
           epoch_ms(min(l.received_ms)) AS start_time, epoch_ms(max(l.received_ms)) AS end_time,
           (max(l.received_ms) - min(l.received_ms)) / 1000.0 AS duration_s,
           count(*) FILTER (WHERE l.type = 'ce') AS actions,
           arg_max(l.visit_properties, l.received_ms) AS properties, {started}
    FROM lines l LEFT JOIN survivors s USING (profile)
    WHERE l.visit IS NOT NULL GROUP BY l.visit;
""".format(  # the derived names: an action's own; a visit's from the request that started it
    derived=", ".join(f"l.{name}" for name in DERIVED if name != "device"
                      and name not in ("browser", "os")),
    started=", ".join(f"arg_min(l.{name}, l.received_ms) AS {name}" for name in DERIVED
                      if name != "device"))


class QueryError(Exception):
    """A query that cannot run, in one line."""


def day_files(folder: Path, pattern: str, first: str | None, last: str | None) -> list[Path]:
    """The files matching ``pattern`` of the receipt days in [first, last]."""
    if not folder.is_dir():
        return []
    days = sorted(d for d in folder.iterdir() if DAY.fullmatch(d.name)
                  and (first is None or d.name >= first) and (last is None or d.name <= last))
    return [path for day in days for path in sorted(day.glob(pattern))]


@dataclass
class Result:
    """A query's columns and its rows, read ``CHUNK_ROWS`` at a time, at most ``max_rows``;
    ``more`` is True once rows beyond them were left unread."""

    columns: list[str]
    _views: Views
    _cursor: duckdb.DuckDBPyConnection
    max_rows: int
    more: bool = False

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        left = self.max_rows
        while left > 0:
            chunk = self._views.guarded(self._cursor.fetchmany, min(CHUNK_ROWS, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
        self.more = bool(self._views.guarded(self._cursor.fetchmany, 1))


class Views:
    """The views of one project's day logs in an in-memory DuckDB, within ``settings``'
    bounds: receipt days [first, last] from ``kept_from`` (the project's retention; lines of
    earlier event times are left out too). ``cut`` counts the persons whose family of merged
    profiles was cut at ``max_family_profiles``. The time limit runs from here to ``close``."""

    def __init__(self, folder: Path, first: str | None = None, last: str | None = None,
                 settings: Settings | None = None, kept_from: str | None = None) -> None:
        settings = settings or Settings()
        self.settings = settings
        self.cut = 0
        if kept_from is not None:
            first = max(first or kept_from, kept_from)
        try:
            self.con = duckdb.connect(config={
                "threads": 2, "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "memory_limit": f"{settings.query_max_memory_bytes}B"})
        except duckdb.Error as exc:
            raise QueryError(f"cannot start DuckDB: {_first_line(exc)}") from None
        self._expired = threading.Event()
        self._lock = threading.Lock()  # the timer never interrupts a closed connection
        self._closed = False
        self._timer = threading.Timer(settings.query_timeout_ms / 1000, self._expire)
        self._timer.daemon = True
        self._timer.start()
        try:
            self.guarded(self._create, folder, first, last, kept_from)
        except BaseException:
            self.close()
            raise

    def _expire(self) -> None:
        with self._lock:
            if not self._closed:
                self._expired.set()
                self.con.interrupt()

    def _create(self, folder: Path, first: str | None, last: str | None,
                kept_from: str | None) -> None:
        con = self.con
        con.execute("SET temp_directory = ''")  # else DuckDB allows its temporary folder too
        lines = day_files(folder, PARTS, first, last)
        kept = "true" if kept_from is None else f"event_ms IS NULL OR event_ms >= {_ms(kept_from)}"
        con.execute(f"CREATE VIEW lines AS SELECT * FROM ({_reader(lines, COLUMNS)}) "
                    f"WHERE {kept}")
        # earlier merges still join profiles (but not those of days past the retention)
        merges = day_files(folder, MERGES, kept_from, last)
        con.execute(f"CREATE VIEW merges AS SELECT DISTINCT source, \"into\", identifier, "
                    f"visitor_key, epoch_ms(at_ms) AS merge_time "
                    f"FROM ({_reader(merges, MERGE_COLUMNS)})")
        self._survivors()
        con.execute(VIEWS)
        # From here on, the query's own reach: this folder, read only.
        con.execute(f"SET allowed_directories = [{_literal(str(folder.resolve()) + '/')}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")

    def _survivors(self) -> None:
        """``survivors(profile, person)``: each merged profile that is counted as another."""
        cursor = self.con.execute('SELECT DISTINCT source, "into" FROM merges')

        def merges() -> Iterator[tuple[str, str]]:
            while chunk := cursor.fetchmany(10 * CHUNK_ROWS):
                yield from chunk

        person, self.cut = persons(merges(), self.settings.max_family_profiles)
        if self._expired.is_set():
            raise duckdb.InterruptException("Interrupted!")
        others = [(profile, name) for profile, name in person.items() if profile != name]
        self.con.execute("CREATE TABLE survivors (profile VARCHAR, person VARCHAR)")
        if others:
            self.con.execute("INSERT INTO survivors SELECT unnest($1), unnest($2)",
                             [[p for p, _ in others], [n for _, n in others]])

    def query(self, sql: str, max_rows: int | None = None) -> Result:
        """One read-only statement's columns and rows (read as they are asked for)."""
        try:
            sql.encode()
        except UnicodeEncodeError:  # bytes of the command line that are not UTF-8
            raise QueryError("the SQL is not valid UTF-8") from None
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(_first_line(exc)) from None
        if len(statements) != 1:
            raise QueryError("give one SQL statement")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise QueryError("only SELECT queries are run (the day logs are read, never changed)")
        cursor = self.guarded(self.con.execute, sql)
        return Result([d[0] for d in cursor.description or ()], self, cursor,
                      self.settings.query_max_rows if max_rows is None else max_rows)

    def guarded(self, call: Any, *args: Any) -> Any:
        """``call(*args)``, DuckDB's failures (the time limit's among them) as one line."""
        try:
            return call(*args)
        except duckdb.InterruptException:
            if not self._expired.is_set():
                raise KeyboardInterrupt from None  # Ctrl-C
            raise QueryError(f"stopped after {self.settings.query_timeout_ms / 1000:g} s "
                             "(TRACKPIPE_QUERY_TIMEOUT_MS)") from None
        except duckdb.OutOfMemoryException:
            raise QueryError(f"needs more than {self.settings.query_max_memory_bytes:,} bytes "
                             "of memory (TRACKPIPE_QUERY_MAX_MEMORY_BYTES)") from None
        except (duckdb.Error, OSError, ValueError, OverflowError) as exc:
            # e.g. a day removed by retention meanwhile, or a value Python cannot hold
            raise QueryError(_first_line(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._timer.cancel()
            self.con.close()

    def __enter__(self) -> Views:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(folder: Path, first: str | None = None, last: str | None = None,
            settings: Settings | None = None, kept_from: str | None = None) -> Views:
    """``Views`` (what a caller closes)."""
    return Views(folder, first, last, settings, kept_from)


def run(views: Views, sql: str, max_rows: int | None = None
        ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows (at most ``max_rows``) of one read-only statement."""
    result = views.query(sql, max_rows)
    return result.columns, [row for chunk in result.chunks() for row in chunk]


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


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
