"""Which event ids a visitor remembers, to process a replayed request once. Pure.

A request can reach the raw topic twice with the same event id: the gateway spooled it, Kafka
had in fact taken it, and the drainer sends it again (after a gateway crash between the two
acknowledgements). Both copies carry the same visitor key, so they meet in one visitor entry,
which remembers the ids it saw: those of the last ``DEDUPE_WINDOW_MS`` (48 h) of its receipt
times, at most ``MAX_REMEMBERED`` (the newest). A replay is dropped without a message of its
own: the ids live in the visitor entry, whose changelog is written anyway.
"""

from __future__ import annotations

DEDUPE_WINDOW_MS = 48 * 3_600_000
MAX_REMEMBERED = 256


def remember(seen: dict[str, int], event_id: str, received_ms: int) -> dict[str, int]:
    """``seen`` with ``event_id`` added, and without ids received more than the window
    before it or beyond the newest ``MAX_REMEMBERED``."""
    horizon = received_ms - DEDUPE_WINDOW_MS
    kept = {k: t for k, t in seen.items() if t >= horizon}
    kept[event_id] = received_ms
    if len(kept) > MAX_REMEMBERED:
        kept = dict(list(kept.items())[-MAX_REMEMBERED:])
    return kept
