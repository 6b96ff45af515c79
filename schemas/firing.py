"""A firing: one trigger rule fired by one action, as kept in the compacted ``firings`` topic
until it is delivered (``triggers.service`` says why it is written before delivery).

Keyed by its id ``<event id>/<rule name>`` (also the webhook's delivery id), in the partition
numbered like the action's. The value holds everything a delivery needs: the rule, the action
and the profile the rule saw. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from schemas.trigger import TriggerRule


@dataclass(slots=True)
class Firing:
    id: str
    partition: int
    rule: TriggerRule
    action: dict[str, Any]
    profile: dict[str, Any] | None

    def to_bytes(self) -> bytes:
        return json.dumps({"rule": self.rule.to_dict(), "action": self.action,
                           "profile": self.profile}).encode()

    @classmethod
    def from_bytes(cls, firing_id: str, partition: int, data: bytes) -> Firing:
        obj = json.loads(data)
        return cls(firing_id, partition, TriggerRule.from_dict(obj["rule"]), obj["action"],
                   obj.get("profile"))

    def body(self) -> bytes:
        """The webhook's body: exactly these bytes are signed."""
        return json.dumps({"trigger": self.rule.name, "project": self.rule.project,
                           "delivery": self.id, "action": self.action, "profile": self.profile},
                          separators=(",", ":"), ensure_ascii=False).encode()
