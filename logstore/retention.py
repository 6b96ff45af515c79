"""Which receipt days of a project's day logs are past its retention. Pure.

A project keeps its day logs ``retention_days``: a receipt day goes once the whole of it is
older than that, counted from today (UTC). Only names that are days are ever considered, so
nothing else in a project's folder (the event-day index, the timeline index) can be taken for
one. The worker removes them (``processors.stages.visitors``); ``timeline`` and ``query`` show
nothing older, whether or not a worker has removed it yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from logstore.layout import DAY


def cutoff_day(now_ms: int, retention_days: int) -> str:
    """The first receipt day still kept."""
    today = datetime.fromtimestamp(now_ms / 1000, UTC).date()
    return (today - timedelta(days=retention_days - 1)).isoformat()


def expired_days(days: Iterable[str], now_ms: int, retention_days: int) -> list[str]:
    """The receipt days among ``days`` that are wholly past the retention."""
    first_kept = cutoff_day(now_ms, retention_days)
    return sorted(day for day in days if DAY.fullmatch(day) and day < first_kept)
