"""SQL over day logs written by the day-log writer: the views, attribution to the surviving
profile, visits, what a query may not do, its bounds (memory, time, rows, a family's size),
and the project's retention."""

import json
import time
import tracemalloc

import pytest

from logstore import sql as logsql
from logstore.layout import day_of
from logstore.lines import Indexed, LogLine, encode
from processors.daylog import DayLogWriter
from runtime.settings import Settings
from schemas.identity import Merge

DAY1 = 1_700_000_000_000          # 2023-11-14
DAY2 = DAY1 + 86_400_000          # 2023-11-15


def line(offset, index, received_ms, profile, event="pv", kind="ce", visit="v1",
         properties=None, visit_properties=None):
    record = json.dumps({"id": f"{offset}.{index}", "type": kind, "event": event,
                         "profile": profile, "visitor_key": "cookie:c", "visit": visit,
                         "event_ms": received_ms, "received_ms": received_ms,
                         "properties": properties or {},
                         "visit_properties": visit_properties or {}}).encode()
    return LogLine("p", day_of(received_ms), index, encode(record, 0, offset, index),
                   day_of(received_ms), Indexed(profile, received_ms, kind, ["cookie:c"]))


@pytest.fixture
def folder(tmp_path):
    writer = DayLogWriter(tmp_path)
    writer.write(0, 1, [
        line(1, 0, DAY1, "a", properties={"url": "/", "campaign_name": "fall"}),
        line(1, 1, DAY1 + 1000, "a", "ping", kind="ping"),
        line(1, 2, DAY1 + 5000, "b", "signup", visit="v2", visit_properties={"ab": "x"}),
    ])
    writer.write(0, 2, [line(2, 0, DAY2, "c", properties={"campaign_name": "fall"},
                             visit="v3"),
                        line(2, 1, DAY2 + 1, "a", "signup", visit="v3")])
    writer.write_merge(Merge("b", "c", "email:e", "p", "cookie:c", DAY1), 3)
    writer.write_merge(Merge("c", "a", "id:u", "p", "cookie:c", DAY2), 3)
    writer.close()
    return tmp_path / "p"


def query(folder, sql, first=None, last=None, kept_from=None, **settings):
    with logsql.connect(folder, first, last, Settings(**settings), kept_from) as views:
        return logsql.run(views, sql)[1]


def merged(tmp_path, *pairs):
    writer = DayLogWriter(tmp_path)
    for source, into in pairs:
        writer.write_merge(Merge(source, into, "email:e", "p"), 0)
    writer.close()
    return tmp_path / "p"


def test_survivors_follow_chains_of_merges(folder):
    assert query(folder, "SELECT profile, person FROM survivors ORDER BY 1") == [
        ("b", "a"), ("c", "a")]


def test_a_cycle_of_merges_is_one_person_as_in_a_timeline(tmp_path):
    folder = merged(tmp_path, ("a", "b"), ("b", "c"), ("c", "a"))
    assert query(folder, "SELECT profile, person FROM survivors ORDER BY 1") == [
        ("b", "a"), ("c", "a")]


def test_a_chain_of_any_length_ends_in_its_survivor(tmp_path):
    folder = merged(tmp_path, *((f"p{n:03d}", f"p{n + 1:03d}") for n in range(100)))
    assert query(folder, "SELECT DISTINCT person FROM survivors") == [("p100",)]


def test_two_survivors_of_one_profile_are_one_person(tmp_path):
    folder = merged(tmp_path, ("x", "b"), ("x", "a"), ("y", "b"))
    assert query(folder, "SELECT DISTINCT person FROM survivors") == [("a",)]


def test_a_family_past_the_bound_is_cut_and_said(tmp_path):
    folder = merged(tmp_path, *((f"junk{n}", "victim") for n in range(5)))
    with logsql.connect(folder, settings=Settings(max_family_profiles=3)) as views:
        rows = logsql.run(views, "SELECT * FROM survivors ORDER BY 1")[1]
        assert views.cut == 1
    # from junk0 (the first by name): victim, then one more of victim's neighbours; junk2,
    # junk3 and junk4 are left out of that family, each a person of its own
    assert rows == [("junk0", "victim"), ("junk1", "victim")]
    with logsql.connect(folder, settings=Settings(max_family_profiles=6)) as views:
        assert views.cut == 0


def test_actions_per_day_by_person_and_campaign(folder):
    assert query(folder, "SELECT CAST(day AS VARCHAR), count(*) FROM actions GROUP BY 1 "
                 "ORDER BY 1") == [("2023-11-14", 2), ("2023-11-15", 2)]
    assert query(folder, "SELECT DISTINCT person FROM actions") == [("a",)]  # b → c → a
    assert query(folder, "SELECT campaign, count(*) FROM actions WHERE campaign IS NOT NULL "
                 "GROUP BY 1") == [("fall", 2)]
    assert query(folder, "SELECT count(*) FROM lines WHERE type = 'ping'") == [(1,)]
    assert query(folder, "SELECT source, \"into\" FROM merges ORDER BY merge_time") == [
        ("b", "c"), ("c", "a")]


def test_visits_come_from_their_lines(folder):
    rows = query(folder, "SELECT visit, actions, duration_s, properties FROM visits "
                 "ORDER BY visit")
    assert rows == [("v1", 1, 1.0, "{}"), ("v2", 1, 0.0, '{"ab":"x"}'), ("v3", 2, 0.001, "{}")]


def test_receipt_days_narrow_the_files_read(folder):
    assert query(folder, "SELECT count(*) FROM actions", first="2023-11-15") == [(2,)]
    assert query(folder, "SELECT count(*) FROM actions", last="2023-11-14") == [(2,)]
    assert query(folder, "SELECT count(*) FROM actions", first="2024-01-01") == [(0,)]


def test_a_project_without_logs_has_empty_views(tmp_path):
    assert query(tmp_path / "none", "SELECT count(*), count(DISTINCT person) FROM actions") \
        == [(0, 0)]


@pytest.mark.parametrize("sql, says", [
    ("SELEC 1", "syntax error"),
    ("SELECT nope FROM actions", "nope"),
    ("SELECT 1; SELECT 2", "one SQL statement"),
    ("COPY actions TO 'out.csv'", "only SELECT"),
    ("CREATE TABLE t (a INT)", "only SELECT"),
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
    ("SELECT * FROM read_json('{folder}/../other/2023-11-14/part-000.jsonl')", "disabled"),
    ("SELECT * FROM read_json('{folder}/../../etc/passwd')", "disabled"),
    ("EXPLAIN ANALYZE COPY (SELECT 'x') TO '{folder}/2023-11-14/part-000.jsonl'", "only SELECT"),
    ("EXPLAIN SELECT 1", "only SELECT"),
    ("SET enable_external_access = true", "only SELECT"),
])
def test_what_a_query_may_not_do_is_a_one_line_error(folder, sql, says):
    other = folder.parent / "other" / "2023-11-14"
    other.mkdir(parents=True)
    (other / "part-000.jsonl").write_text('{"id": "theirs"}\n')
    before = {p: p.read_bytes() for p in folder.rglob("*.jsonl")}
    with pytest.raises(logsql.QueryError) as refused:
        query(folder, sql.format(folder=folder))
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert {p: p.read_bytes() for p in folder.rglob("*.jsonl")} == before


def test_a_merge_logged_twice_counts_once(folder):
    writer = DayLogWriter(folder.parent)
    writer.write_merge(Merge("c", "a", "id:u", "p", "cookie:c", DAY2), 3)  # a retried write
    writer.close()
    assert query(folder, "SELECT count(*) FROM merges") == [(2,)]
    assert query(folder, "SELECT count(*) FROM actions WHERE person = 'a'") == [(4,)]


def test_rows_are_read_in_chunks_up_to_the_cap(folder):
    with logsql.connect(folder) as views:
        result = views.query("SELECT range FROM range(2500)", max_rows=10_000)
        assert [len(c) for c in result.chunks()] == [1000, 1000, 500] and not result.more
        result = views.query("SELECT range FROM range(2500)", max_rows=1500)
        assert sum(len(c) for c in result.chunks()) == 1500 and result.more
        result = views.query("SELECT range FROM range(2500)", max_rows=2500)
        assert sum(len(c) for c in result.chunks()) == 2500 and not result.more
    with logsql.connect(folder, settings=Settings(query_max_rows=7)) as views:
        result = views.query("SELECT range FROM range(2500)")
        assert sum(len(c) for c in result.chunks()) == 7 and result.more


def test_a_wide_result_is_never_held_whole(folder):
    """100 MB of rows, read through: Python holds a chunk at a time."""
    with logsql.connect(folder) as views:
        result = views.query("SELECT repeat('x', 1000) AS wide FROM range(100000)",
                             max_rows=100_000)
        tracemalloc.start()
        try:
            rows = sum(len(chunk) for chunk in result.chunks())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert rows == 100_000 and peak < 10_000_000, peak


def test_memory_past_the_limit_is_a_one_line_error(folder):
    with pytest.raises(logsql.QueryError, match="TRACKPIPE_QUERY_MAX_MEMORY_BYTES") as refused:
        query(folder, "SELECT list(repeat('x', 1000)) FROM range(1000000)",
              query_max_memory_bytes=64 * 1024 * 1024)
    assert "\n" not in str(refused.value)


def test_a_query_past_the_time_limit_is_interrupted(folder):
    started = time.monotonic()
    with pytest.raises(logsql.QueryError, match="after 0.5 s .TRACKPIPE_QUERY_TIMEOUT_MS"):
        query(folder, "SELECT count(*) FROM range(1e12::BIGINT)", query_timeout_ms=500)
    assert time.monotonic() - started < 10
    with logsql.connect(folder, settings=Settings(query_timeout_ms=500)) as views:
        result = views.query("SELECT range FROM range(100000000)", max_rows=10**9)
        with pytest.raises(logsql.QueryError, match="TRACKPIPE_QUERY_TIMEOUT_MS"):
            for _ in result.chunks():  # reading its rows counts too
                pass


def test_duckdb_installs_and_loads_no_extension_and_its_limits_are_locked(folder):
    assert query(folder, "SELECT current_setting('autoinstall_known_extensions'), "
                 "current_setting('autoload_known_extensions'), "
                 "current_setting('lock_configuration'), current_setting('memory_limit')",
                 query_max_memory_bytes=256 * 1024 * 1024) == [
        (False, False, True, "256.0 MiB")]


def test_days_past_the_retention_are_not_read(folder):
    assert query(folder, "SELECT count(*) FROM lines", kept_from="2023-11-15") == [(2,)]
    assert query(folder, "SELECT count(*) FROM lines", first="2023-11-01",
                 kept_from="2023-11-15") == [(2,)]
    # merges logged on days past it no longer join profiles
    assert query(folder, "SELECT count(*) FROM merges", kept_from="2099-01-01") == [(0,)]


def test_lines_older_than_the_retention_are_not_in_the_views(tmp_path):
    writer = DayLogWriter(tmp_path)
    old = line(1, 0, DAY2, "a", "late-sent")
    record = json.loads(old[3])
    record["event_ms"] = DAY1  # sent on DAY2, happened on DAY1
    old = (*old[:3], json.dumps(record).encode() + b"\n", *old[4:])
    writer.write(0, 1, [old, line(1, 1, DAY2 + 1, "a", "today")])
    writer.close()
    assert query(tmp_path / "p", "SELECT event FROM actions ORDER BY 1") == [
        ("late-sent",), ("today",)]
    assert query(tmp_path / "p", "SELECT event FROM actions",
                 kept_from=day_of(DAY2)) == [("today",)]
