"""SQL over day logs written by the day-log writer: the views, attribution to the surviving
profile, visits, what a query may not do, and the output formats."""

import json

import pytest

from processors.daylog import DayLogWriter, day_of, source_suffix
from schemas.identity import Merge
from trackpipe import logsql

DAY1 = 1_700_000_000_000          # 2023-11-14
DAY2 = DAY1 + 86_400_000          # 2023-11-15


def line(offset, index, received_ms, profile, event="pv", kind="ce", visit="v1",
         properties=None, visit_properties=None):
    record = json.dumps({"id": f"{offset}.{index}", "type": kind, "event": event,
                         "profile": profile, "visitor_key": "cookie:c", "visit": visit,
                         "event_ms": received_ms, "received_ms": received_ms,
                         "properties": properties or {},
                         "visit_properties": visit_properties or {}}).encode()
    return ("p", day_of(received_ms), index, record[:-1] + source_suffix(0, offset, index),
            day_of(received_ms), (profile, received_ms, kind, ["cookie:c"]))


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


def query(folder, sql, first=None, last=None):
    return logsql.run(logsql.connect(folder, first, last), sql)[1]


def test_survivors_follow_chains_of_merges(folder):
    assert query(folder, "SELECT profile, person FROM survivors ORDER BY 1") == [
        ("b", "a"), ("c", "a")]


def test_a_cycle_of_merges_ends_instead_of_hanging(tmp_path):
    writer = DayLogWriter(tmp_path)
    for source, into in (("a", "b"), ("b", "a")):
        writer.write_merge(Merge(source, into, "email:e", "p"), 0)
    writer.close()
    assert len(query(tmp_path / "p", "SELECT * FROM survivors")) == 2


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
