"""The record of the public ``visits`` topic: a visit started or ended (SPEC §4).

One JSON message per event of a visit, keyed like the visitor's raw records
(``project \\n visitor key``), so a consumer reads a visitor's visits in order. A ``visit
started`` record also carries the derived names of the request that started it (browser, OS,
device, location: ``schemas.action.DERIVED``), after its properties, where known. A consumer keys
them by ``visit`` and ``type``: after a worker's crash a record can come twice, byte for byte.
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.identity import scoped_key
from schemas.jsonline import to_json

STARTED = "visit started"
ENDED = "visit ended"


@dataclass(frozen=True, slots=True)
class VisitRecord:
    type: str                 # STARTED or ENDED
    project: str
    visitor_key: str
    profile: str
    visit: str                # the visit id
    start_ms: int
    last_ms: int
    actions: int
    properties: dict[str, Any] = field(default_factory=dict)   # the visit's cs_* properties
    derived: dict[str, Any] = field(default_factory=dict)  # of the request that started it

    @property
    def key(self) -> bytes:
        return scoped_key(self.project, self.visitor_key)

    @property
    def duration_ms(self) -> int:
        return self.last_ms - self.start_ms

    def to_json(self) -> bytes:
        return to_json({"type": self.type, "project": self.project,
                        "visitor_key": self.visitor_key, "profile": self.profile,
                        "visit": self.visit, "start_ms": self.start_ms, "last_ms": self.last_ms,
                        "duration_ms": self.duration_ms, "actions": self.actions,
                        "properties": self.properties, **self.derived})
