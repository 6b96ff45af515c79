"""The gateway's counters, rendered in the Prometheus text format.

Plain attributes and dicts: incrementing one is a dict operation on the hot path, and a
dependency would buy nothing a scrape needs here.
"""

from __future__ import annotations

import bisect
from collections import Counter

ACK_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.ack_buckets = [0] * (len(ACK_BUCKETS_S) + 1)
        self.ack_sum_s = 0.0
        self.kafka_errors = 0
        self.spool_depth = 0
        self.spool_bytes = 0
        self.spool_drained = 0

    def count(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] += 1

    def observe_ack(self, seconds: float) -> None:
        self.ack_buckets[bisect.bisect_left(ACK_BUCKETS_S, seconds)] += 1
        self.ack_sum_s += seconds

    def render(self) -> str:
        lines = [
            "# HELP trackpipe_gateway_requests_total Tracking requests by endpoint and status.",
            "# TYPE trackpipe_gateway_requests_total counter",
        ]
        for (endpoint, status), n in sorted(self.requests.items()):
            lines.append(
                f'trackpipe_gateway_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
        lines += [
            "# HELP trackpipe_gateway_ack_seconds Time until Kafka acknowledged a record.",
            "# TYPE trackpipe_gateway_ack_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip((*ACK_BUCKETS_S, "+Inf"), self.ack_buckets, strict=True):
            cumulative += n
            lines.append(f'trackpipe_gateway_ack_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines += [
            f"trackpipe_gateway_ack_seconds_sum {self.ack_sum_s}",
            f"trackpipe_gateway_ack_seconds_count {cumulative}",
        ]
        for name, kind, value, text in (
            ("kafka_errors_total", "counter", self.kafka_errors, "Kafka send failures."),
            ("spool_depth", "gauge", self.spool_depth, "Spooled records not yet in Kafka."),
            ("spool_bytes", "gauge", self.spool_bytes, "Bytes of spool segments on disk."),
            ("spool_drained_total", "counter", self.spool_drained,
             "Spooled records delivered by the drainer."),
        ):
            lines += [f"# HELP trackpipe_gateway_{name} {text}",
                      f"# TYPE trackpipe_gateway_{name} {kind}",
                      f"trackpipe_gateway_{name} {value}"]
        return "\n".join(lines) + "\n"
