"""A trigger rule: the record of the compacted triggers topic.

``TriggerRule.build`` is the one place that validates what a user typed, so a malformed rule is
refused before anything is written. A condition names its property the way senders do
(``ce_`` action, ``cv_`` visitor, ``cs_`` visit properties), so a rule reads like the requests
it matches, or names one of the built-ins the processors derive (``country``, ``device_type``,
``browser``…: ``schemas.action.DERIVED``), unprefixed as senders send them. The rule's key in
the topic is ``<project>\\n<name>``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from schemas.action import DERIVED
from schemas.project import ProjectError, check_name

OPERATORS = ("=", "!=", "contains", ">", "<", "exists")
SCOPES = {"ce_": "action", "cv_": "visitor", "cs_": "visit"}
MAX_JS_BYTES = 16 * 1024
SCHEMA_VERSION = 1


class TriggerError(ProjectError):
    """A rule that cannot be saved; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    op: str
    value: str | None = None

    @property
    def scope(self) -> str:
        return "derived" if self.key in DERIVED else SCOPES[self.key[:3]]

    @property
    def name(self) -> str:
        return self.key if self.key in DERIVED else self.key[3:]

    @classmethod
    def parse(cls, words: list[str] | tuple[str, ...]) -> Condition:
        """``KEY OP VALUE`` (or ``KEY exists``), as given to ``--where``."""
        if len(words) < 2:
            raise TriggerError(f"condition {' '.join(words)!r}: say KEY OP VALUE")
        key, op, *rest = words
        if key not in DERIVED and (key[:3] not in SCOPES or len(key) < 4):
            raise TriggerError(f"condition key {key!r} must start with ce_ (action), "
                               "cv_ (visitor) or cs_ (visit) and name a property, or be one "
                               f"of the derived names ({', '.join(DERIVED)})")
        if op not in OPERATORS:
            raise TriggerError(f"condition operator {op!r} is not one of "
                               f"{', '.join(OPERATORS)}")
        if op == "exists":
            if rest:
                raise TriggerError(f"condition {key} exists takes no value")
            return cls(key, op)
        if len(rest) != 1:
            raise TriggerError(f"condition {key} {op} needs exactly one value")
        if op in (">", "<"):
            try:
                float(rest[0])
            except ValueError:
                raise TriggerError(f"condition {key} {op} needs a number, not {rest[0]!r}") \
                    from None
        return cls(key, op, rest[0])

    def __str__(self) -> str:
        return f"{self.key} {self.op}" + ("" if self.value is None else f" {self.value}")


@dataclass(frozen=True, slots=True)
class TriggerRule:
    project: str
    name: str
    event: str
    conditions: tuple[Condition, ...] = ()
    webhook: str | None = None
    js: str | None = None

    @classmethod
    def build(cls, project: str, name: str, event: str, *,
              conditions: tuple[Condition, ...] = (), webhook: str | None = None,
              js: str | None = None) -> TriggerRule:
        rule_name = check_name(name, "trigger name")
        if not event.strip():
            raise TriggerError("the event name must not be empty")
        if (webhook is None) == (js is None):
            raise TriggerError("a trigger needs exactly one action: --webhook URL or --js CODE")
        if webhook is not None:
            check_url(webhook)
        if js is not None and not js.strip():
            raise TriggerError("the JavaScript action must not be empty")
        if js is not None and len(js.encode()) > MAX_JS_BYTES:
            raise TriggerError(f"the JavaScript action is over {MAX_JS_BYTES} bytes")
        return cls(check_name(project), rule_name, event.strip(), tuple(conditions), webhook, js)

    @property
    def key(self) -> str:
        return f"{self.project}\n{self.name}"

    def to_dict(self) -> dict[str, object]:
        return {"v": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, obj: dict[str, object]) -> TriggerRule:
        fields = {k: v for k, v in obj.items() if k in cls.__dataclass_fields__}
        fields["conditions"] = tuple(Condition(**c) for c in obj.get("conditions") or ())
        return cls(**fields)  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TriggerRule:
        return cls.from_dict(json.loads(data))

    def shown(self) -> dict[str, object]:
        """What `triggers list` prints."""
        return {"name": self.name, "event": self.event,
                "where": [str(c) for c in self.conditions],
                **({"webhook": self.webhook} if self.webhook else {"js": self.js})}


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TriggerError(f"webhook {url!r} is not an http(s) URL with a host")
    return url
