"""How many ingestion warnings a process records, and the counters of all it noticed. Pure.

Every warning a service notices is counted (``trackpipe_warnings_total``, by project and
kind), but only the first ``PER_MINUTE`` of one project and kind in a minute become records
of the ``warnings`` topic: a sender that repeats its mistake a thousand times a second makes
counts, not a thousand records. The next record of that project and kind says how many were
left out before it (``unrecorded``). Warnings about names that are no project
(``unknown_project``) share one budget and the empty project label, whatever the name: a
flood of made-up names must not grow the records, the counters' series nor this memory.

The clock is an argument (``at_ms``): the processors pass a record's receipt time, so a
worker given the same records records the same warnings; the gateway and the triggers service
pass their own clock. Nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from runtime.prometheus import family
from schemas.warning import IngestionWarning, Kind

PER_MINUTE = 20  # records per project and kind and minute, per process
MAX_KEYS = 10_000  # (project, kind) windows kept; beyond, the oldest minute's are forgotten
MINUTE_MS = 60_000


def label(project: str, kind: str) -> str:
    """The project a warning is counted under: its own, or '' for a name that is none."""
    return "" if kind == Kind.UNKNOWN_PROJECT else project


class WarningBudget:
    def __init__(self, per_minute: int = PER_MINUTE, max_keys: int = MAX_KEYS) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        # (project label, kind) → [minute, recorded in it, left out since the last record]
        self._windows: dict[tuple[str, str], list[int]] = {}
        self.noticed: Counter[tuple[str, str]] = Counter()  # (project label, kind) → count
        self.unrecorded: Counter[str] = Counter()  # kind → warnings left out

    def admit(self, project: str, kind: str, at_ms: int) -> int | None:
        """Count a warning. None: it is only counted; else it is to be recorded, and the
        number is how many of its project and kind were left out before it."""
        key = (label(project, kind), kind)
        self.noticed[key] += 1
        minute = at_ms // MINUTE_MS
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.max_keys:
                self._forget_oldest()
            window = self._windows[key] = [minute, 0, 0]
        elif window[0] != minute:
            window[0], window[1] = minute, 0
        if window[1] >= self.per_minute:
            window[2] += 1
            self.unrecorded[kind] += 1
            return None
        window[1] += 1
        left_out, window[2] = window[2], 0
        return left_out

    def record(self, service: str, project: str, kind: str, reason: str, at_ms: int,
               sample: Callable[[], str], event_id: str = "") -> IngestionWarning | None:
        """Count a warning and, within the budget, the record of it; ``sample`` is asked only
        then, so a flood costs a counter, not a sample."""
        left_out = self.admit(project, kind, at_ms)
        if left_out is None:
            return None
        return IngestionWarning(project=project, kind=kind, reason=reason, at_ms=at_ms,
                                service=service, event_id=event_id, sample=sample(),
                                unrecorded=left_out)

    def _forget_oldest(self) -> None:
        oldest = min(window[0] for window in self._windows.values())
        for key in [k for k, window in self._windows.items() if window[0] == oldest]:
            del self._windows[key]

    def lines(self) -> list[str]:
        """The counters, as Prometheus text lines."""
        lines = family("trackpipe_warnings_total", "counter",
                       "Ingestion warnings noticed (recorded or not), by project and kind; "
                       "project is empty for names that are no project.",
                       (({"project": p, "kind": k}, n)
                        for (p, k), n in sorted(self.noticed.items())))
        lines += family("trackpipe_warnings_unrecorded_total", "counter",
                        f"Warnings only counted: past {self.per_minute} a minute of one "
                        "project and kind.",
                        (({"kind": k}, n) for k, n in sorted(self.unrecorded.items())))
        return lines
