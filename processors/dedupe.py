"""Which remembered event ids can be forgotten. Pure.

The processors remember every event id they processed (the ``seen`` table) so that a replay —
a spool drained after a restart, a retried send — is processed once. Replays come within
hours, so ids are kept for ``DEDUPE_WINDOW_MS`` (48 h, at least the 24 h the contract needs)
after their receipt, then forgotten by a sweep that runs every ``SWEEP_EVERY_MS`` per
partition. Each entry is ``[received_ms, partition]``: a sweep may only delete the keys of the
partition whose tick runs it, because faust writes a deletion to that partition's changelog.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

DEDUPE_WINDOW_MS = 48 * 3_600_000
SWEEP_EVERY_MS = 10 * 60_000


def expired(entries: Iterable[tuple[Any, Any]], partition: int, now_ms: int,
            window_ms: int = DEDUPE_WINDOW_MS) -> Iterator[Any]:
    """Keys of ``partition`` received more than ``window_ms`` before ``now_ms``."""
    for key, value in entries:
        if isinstance(value, list) and len(value) == 2 and value[1] == partition \
                and value[0] < now_ms - window_ms:
            yield key


def sweep_due(last_sweep_ms: int | None, now_ms: int) -> bool:
    return last_sweep_ms is None or now_ms - last_sweep_ms >= SWEEP_EVERY_MS
