"""The gateway's counters, rendered in the Prometheus text format.

Plain attributes and dicts: incrementing one is a dict operation on the hot path, and a
dependency would buy nothing a scrape needs here.
"""

from __future__ import annotations

from collections import Counter

from runtime.prometheus import Histogram, family
from runtime.warning_budget import WarningBudget

ACK_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.ack = Histogram(ACK_BUCKETS_S)
        self.kafka_errors = 0
        self.spool_depth = 0
        self.spool_bytes = 0
        self.spool_drained = 0
        self.envelopes = 0
        self.enveloped_records = 0
        self.spool_errors = 0      # drain rounds that failed (and were tried again)
        self.spool_lost = 0        # spooled entries found corrupt on disk
        self.spool_ack_errors = 0  # acknowledgements the disk refused
        self.spool_refused = 0     # spooled records Kafka refused for good (dead-lettered)
        self.warnings = WarningBudget()  # counts every ingestion warning, records some

    def count(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] += 1

    def enveloped(self, records: int) -> None:
        self.envelopes += 1
        self.enveloped_records += records

    def observe_ack(self, seconds: float) -> None:
        self.ack.observe(seconds)

    def render(self) -> str:
        lines = family("trackpipe_gateway_requests_total", "counter",
                       "Tracking requests by endpoint and status.",
                       [({"endpoint": e, "status": s}, n)
                        for (e, s), n in sorted(self.requests.items())])
        lines += self.ack.lines("trackpipe_gateway_ack_seconds",
                                "Time until Kafka acknowledged a record.")
        for name, kind, value, text in (
            ("kafka_errors_total", "counter", self.kafka_errors, "Kafka send failures."),
            ("spool_depth", "gauge", self.spool_depth, "Spooled records not yet in Kafka."),
            ("spool_bytes", "gauge", self.spool_bytes, "Bytes of spool segments on disk."),
            ("spool_drained_total", "counter", self.spool_drained,
             "Spooled records delivered by the drainer."),
            ("spool_errors_total", "counter", self.spool_errors,
             "Drain rounds that failed on an I/O or Kafka error, and were tried again."),
            ("spool_lost_total", "counter", self.spool_lost,
             "Spooled records found corrupt on disk, which cannot be delivered."),
            ("spool_ack_errors_total", "counter", self.spool_ack_errors,
             "Spool acknowledgements the disk refused (the record may be sent twice)."),
            ("spool_refused_total", "counter", self.spool_refused,
             "Spooled records Kafka refused for good, sent to the dead-letter topic."),
            ("envelopes_total", "counter", self.envelopes,
             "Raw envelopes sent (Kafka messages of many records of one partition)."),
            ("enveloped_records_total", "counter", self.enveloped_records,
             "Records sent in raw envelopes (over envelopes_total: the mean envelope)."),
        ):
            lines += family(f"trackpipe_gateway_{name}", kind, text, [({}, value)])
        lines += self.warnings.lines()
        return "\n".join(lines) + "\n"
