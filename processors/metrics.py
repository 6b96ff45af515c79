"""A worker's counters for ``/metrics`` (Prometheus text): what it processed, what it holds.

Counters are per process and start at zero, as Prometheus expects; gauges (open visits,
consumer lag) describe the partitions this worker holds right now.
"""

from __future__ import annotations

import time
from collections import Counter

from runtime.prometheus import Histogram, family
from runtime.warning_budget import WarningBudget

WRITE_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)


class WorkerMetrics:
    def __init__(self) -> None:
        self.records: Counter[str] = Counter()   # by endpoint
        self.actions: Counter[str] = Counter()   # by project
        self.merges = 0
        self.dead_letters = 0
        self.duplicates = 0
        self.replayed = 0
        self.profiles_trimmed = 0
        self.profiles_cycles = 0
        self.gaps = 0
        self.retention_removed = 0
        self.visits_closed = 0
        self.open_visits: dict[int, int] = {}    # raw partition → open visits
        self.log_write = Histogram(WRITE_BUCKETS_S)
        self.warnings = WarningBudget()  # counts every ingestion warning, records some
        self.started_ms = int(time.time() * 1000)

    def visit_opened(self, partition: int, delta: int) -> None:
        if partition in self.open_visits:  # else: counted from the table at the next rebuild
            self.open_visits[partition] += delta

    def render(self, lag: dict[int, int], lag_s: dict[int, float] | None = None) -> str:
        lines = family("trackpipe_worker_records_total", "counter",
                       "Raw records processed, by endpoint.",
                       (({"endpoint": e}, n) for e, n in sorted(self.records.items())))
        lines += family("trackpipe_worker_actions_total", "counter",
                        "Actions processed, by project.",
                        (({"project": p}, n) for p, n in sorted(self.actions.items())))
        lines += family("trackpipe_worker_consumer_lag", "gauge",
                        "Raw records not yet processed, per partition this worker holds.",
                        (({"partition": p}, n) for p, n in sorted(lag.items())))
        lines += family("trackpipe_worker_consumer_lag_seconds", "gauge",
                        "How far behind each raw partition this worker holds is: now minus "
                        "the receipt time of the newest record handled, while records wait "
                        "(0 when none do).",
                        (({"partition": p}, s) for p, s in sorted((lag_s or {}).items())))
        for name, kind, value, text in (
            ("merges_total", "counter", self.merges, "Profile merges decided."),
            ("dead_letters_total", "counter", self.dead_letters,
             "Records sent to the dead-letter topic."),
            ("duplicates_total", "counter", self.duplicates,
             "Raw records dropped as replays of an event id already logged."),
            ("retention_removed_files_total", "counter", self.retention_removed,
             "Day-log files removed because their project's retention had passed."),
            ("profiles_trimmed_total", "counter", self.profiles_trimmed,
             "Profiles cut down to their bounds (identifiers, properties, bytes)."),
            ("profile_cycles_total", "counter", self.profiles_cycles,
             "Profile changes dropped because merges formed a cycle (never expected)."),
            ("skipped_offsets_total", "counter", self.gaps,
             "Offsets the consumer skipped and the worker fetched itself (faust #216)."),
            ("replayed_envelopes_total", "counter", self.replayed,
             "Raw envelopes read again after a crash or rebalance, applied from the journal."),
            ("visits_closed_total", "counter", self.visits_closed,
             "Visits closed by their timeout."),
            ("open_visits", "gauge", sum(self.open_visits.values()),
             "Open visits in the partitions this worker holds."),
        ):
            lines += family(f"trackpipe_worker_{name}", kind, text, [({}, value)])
        lines += self.log_write.lines("trackpipe_worker_log_write_seconds",
                                      "Time to append one line to a day log.")
        lines += self.warnings.lines()
        return "\n".join(lines) + "\n"


def lag_seconds(lag: dict[int, int], newest_ms: dict[int, int], now_ms: int,
                since_ms: int) -> dict[int, float]:
    """Per partition of ``lag`` (records waiting): how old the newest record handled is, in
    seconds, while records wait, else 0; a partition that waits and has handled nothing since
    ``since_ms`` (the worker's start) is at least that far behind. One rule ("lag above 30 s")
    then alerts on a stuck or slow partition whatever its traffic."""
    return {partition: (max(0, now_ms - newest_ms.get(partition, since_ms)) / 1000
                        if waiting else 0.0)
            for partition, waiting in lag.items()}
