"""Monthly action counts of a project, summed over raw partitions. Pure.

Each raw partition counts the actions it processed per project and month (a table written in
that partition, so replays of one event id are not counted twice: they are dropped before).
The counts travel to the project's own partition, where ``add_count`` keeps the latest count
of every partition for the current month, and ``state`` makes the published ``QuotaState``.
"""

from __future__ import annotations

from typing import Any

from schemas.quota import QuotaState

Total = dict[str, Any]  # {"month": "YYYY-MM", "counts": {"<partition>": count}}


def add_count(total: Total | None, month: str, partition: int, count: int) -> Total | None:
    """The project's total after one partition reported ``count``; None: nothing changes
    (a report of an earlier month, or one the total already holds)."""
    if total is None or month > total["month"]:
        total = {"month": month, "counts": {}}
    elif month < total["month"]:
        return None
    counts = total["counts"]
    if counts.get(str(partition), -1) >= count:
        return None  # counts only grow within a month: an older report arriving late
    return {"month": month, "counts": {**counts, str(partition): count}}


def state(project: str, total: Total, quota: int | None) -> QuotaState:
    return QuotaState(project, total["month"], sum(total["counts"].values()), quota)
