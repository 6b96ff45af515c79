"""Visit (session) arithmetic of SPEC §4. Pure: every time is an argument.

Visits run on receipt time (the processor's clock), not on event time: a visit ends when the
visitor has been silent for ``timeout`` ms *now*, whatever timestamps the actions carried, so
that visits can close on their own within seconds of their deadline.

- ``timeout`` is ms, default 30000; values under 1000 are seconds (the Android SDK sends
  seconds); a value that is not a positive number is the default.
- An action opens a visit if none is open; an action or a ping before the deadline extends it.
  A ping or an update without an open visit changes nothing (there is nothing to keep alive).
- A visit never lasts more than 24 h from its start: its deadline is capped there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

DEFAULT_TIMEOUT_MS = 30_000
MAX_VISIT_MS = 24 * 60 * 60 * 1000


def timeout_ms(value: object) -> int:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT_MS
    if not number > 0 or number != number:  # negative, zero or NaN
        return DEFAULT_TIMEOUT_MS
    return int(number * 1000) if number < 1000 else int(number)


class Visit(msgspec.Struct, frozen=True, gc=False):
    id: str
    start_ms: int
    last_ms: int
    deadline_ms: int
    actions: int = 0
    properties: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def duration_ms(self) -> int:
        return self.last_ms - self.start_ms


class VisitDecision(msgspec.Struct, frozen=True, gc=False):
    visit: Visit | None
    """The open visit after this request (None: no visit is open)."""
    ended: Visit | None = None
    """A visit that had timed out before this request and must be closed first."""
    started: bool = False


def _deadline(start_ms: int, now_ms: int, timeout: int) -> int:
    return min(now_ms + timeout, start_ms + MAX_VISIT_MS)


def next_visit(current: Visit | None, now_ms: int, timeout: int, *, is_action: bool,
               new_visit_id: str, properties: Mapping[str, Any] | None = None
               ) -> VisitDecision:
    """What a request at ``now_ms`` does to the visitor's visit."""
    ended = None
    if current is not None and is_expired(current, now_ms):
        ended, current = current, None
    if current is None:
        if not is_action:
            return VisitDecision(None, ended)
        visit = Visit(new_visit_id, now_ms, now_ms, _deadline(now_ms, now_ms, timeout), 1,
                      dict(properties or {}))
        return VisitDecision(visit, ended, started=True)
    merged = {**current.properties, **properties} if properties else current.properties
    visit = Visit(current.id, current.start_ms, max(current.last_ms, now_ms),
                  max(current.deadline_ms, _deadline(current.start_ms, now_ms, timeout)),
                  current.actions + int(is_action), merged)
    return VisitDecision(visit, ended)


def is_expired(visit: Visit, now_ms: int) -> bool:
    return now_ms >= visit.deadline_ms
