"""What the dashboard computes of problems (``dashboard.summary.last_minute``, the lag in
seconds) and keeps of warnings (``dashboard.server.Collector``), without a broker; the page in
headless Chromium is in test_operator_views."""

from __future__ import annotations

from runtime import prometheus as prom
from runtime.settings import Settings
from schemas.warning import IngestionWarning, Kind
from trackpipe.dashboard.server import LATEST, Collector
from trackpipe.dashboard.summary import REJECTIONS, last_minute, summarize


def scrape(text: str) -> prom.Series:
    return prom.parse(text)


BEFORE = scrape("""
trackpipe_gateway_requests_total{endpoint="ce",status="200"} 100
trackpipe_gateway_requests_total{endpoint="ce",status="403"} 4
trackpipe_worker_dead_letters_total 1
trackpipe_triggers_dead_letters_total 2
trackpipe_triggers_webhook_failures_total 5
trackpipe_warnings_total{project="",kind="unknown_project"} 4
""")
NOW = scrape("""
trackpipe_gateway_requests_total{endpoint="ce",status="200"} 160
trackpipe_gateway_requests_total{endpoint="ce",status="403"} 7
trackpipe_gateway_requests_total{endpoint="unknown",status="431"} 1
trackpipe_gateway_requests_total{endpoint="ce",status="400"} 2
trackpipe_worker_dead_letters_total 2
trackpipe_gateway_spool_refused_total 1
trackpipe_triggers_dead_letters_total 4
trackpipe_triggers_webhook_failures_total 9
trackpipe_warnings_total{project="",kind="unknown_project"} 7
trackpipe_warnings_total{project="shop.example",kind="webhook_failed"} 2
trackpipe_worker_consumer_lag{partition="0"} 5
trackpipe_worker_consumer_lag_seconds{partition="0"} 42.5
trackpipe_worker_consumer_lag_seconds{partition="1"} 0
""")


def test_the_last_minute_counts_refusals_by_status_dead_letters_failures_and_warnings():
    found = last_minute(BEFORE, NOW)
    assert {r["status"]: r["requests"] for r in found["rejections"]} == {
        **dict.fromkeys(REJECTIONS, 0.0), "403": 3.0, "431": 1.0, "400": 2.0}
    assert [r["status"] for r in found["rejections"]][:3] == ["400", "401", "402"]
    why = {r["status"]: r["why"] for r in found["rejections"]}
    assert why["403"] == REJECTIONS["403"] and why["400"] == ""  # a status of its own: its number
    assert found["dead_letters"] == 4.0  # 1 of the worker, 1 spooled, 2 of the triggers
    assert found["webhook_failures"] == 4.0
    assert found["warnings"] == {"unknown_project": 3.0, "webhook_failed": 2.0}


def test_a_restarted_process_counts_from_zero_not_below_it():
    found = last_minute(NOW, BEFORE)  # every counter went down: a restart
    refused = {r["status"]: r["requests"] for r in found["rejections"]}
    assert found["webhook_failures"] == 5.0 and refused["403"] == 4.0


def test_the_summary_says_how_far_behind_the_slowest_partition_is():
    summary = summarize(BEFORE, NOW, 1.0, {"gateways": 1, "workers": 1})
    assert summary["lag_seconds"] == 42.5 and summary["lag"] == 5


def warning(n: int) -> bytes:
    return IngestionWarning(project="shop.example", kind=Kind.OVER_QUOTA, reason="why",
                            at_ms=1_000 + n, service="gateway", event_id=f"e{n}").to_json()


def test_the_collector_keeps_the_newest_warnings_whatever_order_partitions_come_in():
    collector = Collector(Settings(kafka_bootstrap="127.0.0.1:1"), "127.0.0.1:1")
    for n in [*range(0, 60, 2), *range(1, 60, 2)]:  # two partitions, one after the other
        collector.warned(warning(n))
    collector.warned(b"{not a warning")
    assert [w["event_id"] for w in collector.latest_warnings()] == [
        f"e{n}" for n in range(59, 59 - LATEST, -1)]
