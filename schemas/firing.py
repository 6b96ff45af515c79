"""A firing: one trigger rule fired by one action, as kept in the compacted ``firings`` topic
until it is delivered (``triggers.service`` says why it is written before delivery).

Keyed by its id ``<event id>/<rule name>`` (also the webhook's delivery id), in the partition
numbered like the action's. The value holds everything a delivery needs: the rule, the action
and the profile the rule saw, as JSON in UTF-8 (not ``\\u`` escapes, which made a 400 KB
action of non-ASCII text a 1.2 MB firing). A firing over ``MAX_FIRING_BYTES`` keeps only what
identifies its action and profile, marked ``"truncated"`` with the size it had: it must fit
in a Kafka message whatever the action held, and the webhook's receiver gets the same. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from schemas.trigger import TriggerRule

MAX_FIRING_BYTES = 1024 * 1024
KEPT_ACTION_FIELDS = ("id", "project", "type", "event", "profile", "visitor_key", "visit",
                      "event_ms", "received_ms", "over_quota", "cookie_assigned")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class Firing:
    id: str
    partition: int
    rule: TriggerRule
    action: dict[str, Any]
    profile: dict[str, Any] | None

    def to_bytes(self) -> bytes:
        return _json({"rule": self.rule.to_dict(), "action": self.action,
                      "profile": self.profile})

    def bounded(self) -> Firing:
        """This firing, or, over ``MAX_FIRING_BYTES``, one that keeps only what identifies
        its action and profile (``"truncated"``: the size it had)."""
        size = len(self.to_bytes())
        if size <= MAX_FIRING_BYTES:
            return self
        action = {k: self.action[k] for k in KEPT_ACTION_FIELDS if k in self.action}
        profile = None if self.profile is None else {
            "profile": self.profile.get("profile"), "truncated": True}
        return replace(self, action={**action, "truncated": size}, profile=profile)

    @classmethod
    def from_bytes(cls, firing_id: str, partition: int, data: bytes) -> Firing:
        obj = json.loads(data)
        return cls(firing_id, partition, TriggerRule.from_dict(obj["rule"]), obj["action"],
                   obj.get("profile"))

    def body(self) -> bytes:
        """The webhook's body: exactly these bytes are signed."""
        return _json({"trigger": self.rule.name, "project": self.rule.project,
                      "delivery": self.id, "action": self.action, "profile": self.profile})
