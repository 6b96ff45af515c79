"""What the dashboard shows, computed from two rounds of scrapes. Pure.

Rates and latency quantiles are over the window between the two rounds (counters are deltas,
so a restarted process, whose counters start again at zero, is read as a reset, not as a
negative rate); gauges are the latest values summed over every process that answered.
"""

from __future__ import annotations

from typing import Any

from runtime import prometheus as prom

REQUESTS = "trackpipe_gateway_requests_total"
ACK = "trackpipe_gateway_ack_seconds"
# what a refusal's status means, for the operator (every other status of 400 and up is shown
# with its number alone)
REJECTIONS = {"401": "no valid secret", "402": "over quota (logged)",
              "403": "unknown project or excluded", "413": "too large",
              "414": "URL too long", "431": "headers too large", "503": "unavailable"}
DEAD_LETTERS = ("trackpipe_worker_dead_letters_total", "trackpipe_gateway_spool_refused_total",
                "trackpipe_triggers_dead_letters_total")


def merged(scrapes: list[prom.Series]) -> prom.Series:
    out: prom.Series = {}
    for series in scrapes:
        for key, value in series.items():
            out[key] = out.get(key, 0.0) + value
    return out


def _delta(now: float, before: float) -> float:
    return now - before if now >= before else now  # a counter reset: the process restarted


def summarize(previous: prom.Series, current: prom.Series, seconds: float,
              processes: dict[str, int]) -> dict[str, Any]:
    window = max(seconds, 1e-6)
    statuses_now = prom.by_label(current, REQUESTS, "status")
    statuses_before = prom.by_label(previous, REQUESTS, "status")
    recent = {s: _delta(n, statuses_before.get(s, 0.0)) for s, n in statuses_now.items()}
    accepted = sum(n for s, n in recent.items() if s in ("200", "202", "402"))
    buckets_now = prom.histogram_buckets(current, ACK)
    buckets_before = prom.histogram_buckets(previous, ACK)
    window_buckets = {b: _delta(n, buckets_before.get(b, 0.0)) for b, n in buckets_now.items()}
    if not any(window_buckets.values()):
        window_buckets = buckets_now  # no acks in the window: the quantiles since start
    p50, p99 = prom.quantile(window_buckets, 0.5), prom.quantile(window_buckets, 0.99)
    lag = prom.by_label(current, "trackpipe_worker_consumer_lag", "partition")
    behind = prom.by_label(current, "trackpipe_worker_consumer_lag_seconds", "partition")
    return {
        "events_per_s": accepted / window,
        "requests_per_s": sum(recent.values()) / window,
        "status_per_s": {s: n / window for s, n in sorted(recent.items())},
        "accepted_total": sum(n for s, n in statuses_now.items() if s in ("200", "202", "402")),
        "status_total": dict(sorted(statuses_now.items())),
        "ack_p50_ms": None if p50 is None else p50 * 1000,
        "ack_p99_ms": None if p99 is None else p99 * 1000,
        "spool_depth": prom.total(current, "trackpipe_gateway_spool_depth"),
        "kafka_errors": prom.total(current, "trackpipe_gateway_kafka_errors_total"),
        "lag": sum(lag.values()),
        "lag_by_partition": {p: lag[p] for p in sorted(lag, key=int)},
        "lag_seconds": max(behind.values(), default=0.0),
        "open_visits": prom.total(current, "trackpipe_worker_open_visits"),
        "actions_by_project": dict(sorted(
            prom.by_label(current, "trackpipe_worker_actions_total", "project").items(),
            key=lambda item: -item[1])),
        "merges": prom.total(current, "trackpipe_worker_merges_total"),
        "dead_letters": prom.total(current, "trackpipe_worker_dead_letters_total"),
        "processes": processes,
    }


def last_minute(before: prom.Series, current: prom.Series) -> dict[str, Any]:
    """What went wrong between two scrapes about a minute apart (``before``: the oldest the
    collector holds within the last minute): requests refused by status with what it means
    (the statuses of ``REJECTIONS`` always, any other of 400 and up when seen), dead letters of
    every service, failed webhook attempts, and ingestion warnings by kind."""
    statuses_now = prom.by_label(current, REQUESTS, "status")
    statuses_before = prom.by_label(before, REQUESTS, "status")
    refused = {s: _delta(n, statuses_before.get(s, 0.0)) for s, n in statuses_now.items()
               if s.isdigit() and int(s) >= 400}
    kinds_now = prom.by_label(current, "trackpipe_warnings_total", "kind")
    kinds_before = prom.by_label(before, "trackpipe_warnings_total", "kind")
    return {
        "rejections": [{"status": s, "why": REJECTIONS.get(s, ""),
                        "requests": refused.get(s, 0.0)} for s in sorted({*REJECTIONS, *refused})],
        "dead_letters": sum(_delta(prom.total(current, name), prom.total(before, name))
                            for name in DEAD_LETTERS),
        "webhook_failures": _delta(
            prom.total(current, "trackpipe_triggers_webhook_failures_total"),
            prom.total(before, "trackpipe_triggers_webhook_failures_total")),
        "warnings": {k: d for k, n in sorted(kinds_now.items())
                     if (d := _delta(n, kinds_before.get(k, 0.0)))},
    }


def status_line(summary: dict[str, Any]) -> str:
    """The one line `trackpipe up` keeps rewriting in the terminal."""
    p99 = summary.get("ack_p99_ms")
    return (f"{summary['events_per_s']:7.1f} events/s · "
            f"202 {summary['status_per_s'].get('202', 0.0):.1f}/s · "
            f"ack p99 {'-' if p99 is None else f'{p99:.1f} ms'} · "
            f"lag {summary['lag']:.0f} · open visits {summary['open_visits']:.0f}")
