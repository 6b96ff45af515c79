"""A worker's counters for ``/metrics`` (Prometheus text): what it processed, what it holds.

Counters are per process and start at zero, as Prometheus expects; gauges (open visits,
consumer lag) describe the partitions this worker holds right now.
"""

from __future__ import annotations

from collections import Counter

from runtime.prometheus import Histogram, family

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

    def visit_opened(self, partition: int, delta: int) -> None:
        if partition in self.open_visits:  # else: counted from the table at the next rebuild
            self.open_visits[partition] += delta

    def render(self, lag: dict[int, int]) -> str:
        lines = family("trackpipe_worker_records_total", "counter",
                       "Raw records processed, by endpoint.",
                       (({"endpoint": e}, n) for e, n in sorted(self.records.items())))
        lines += family("trackpipe_worker_actions_total", "counter",
                        "Actions processed, by project.",
                        (({"project": p}, n) for p, n in sorted(self.actions.items())))
        lines += family("trackpipe_worker_consumer_lag", "gauge",
                        "Raw records not yet processed, per partition this worker holds.",
                        (({"partition": p}, n) for p, n in sorted(lag.items())))
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
        return "\n".join(lines) + "\n"
