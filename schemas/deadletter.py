"""The one record of the ``deadletter`` topic, whatever service could not handle something.

Kinds: ``record`` (a processor input it could not handle: an envelope, or one record of an
envelope, ``index`` saying which), ``action`` (an action the triggers service could not read)
and ``trigger`` (a firing that was not delivered). Every letter says what failed (``error``)
and where the input was (``topic``, ``partition``, ``offset``); the input's own bytes travel
base64-encoded, cut to ``MAX_VALUE_BYTES`` with ``value_bytes`` giving the original size, so a
letter always fits in a Kafka message however large the input was. Kind-specific fields
(``detail``: a firing's delivery id, rule, webhook, action, profile) sit beside them. JSON,
keyed by the input's key. Pure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.jsonline import to_json

MAX_VALUE_BYTES = 256 * 1024


def _b64(data: bytes | None, limit: int) -> str | None:
    return None if data is None else base64.b64encode(data[:limit]).decode()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    kind: str
    error: str
    topic: str = ""
    partition: int | None = None
    offset: int | None = None
    index: int | None = None
    key: bytes | None = None
    value: bytes | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        letter: dict[str, Any] = {
            "kind": self.kind, "error": self.error, "topic": self.topic,
            "partition": self.partition, "offset": self.offset, "index": self.index,
            "key": _b64(self.key, MAX_VALUE_BYTES), "value": _b64(self.value, MAX_VALUE_BYTES),
            **self.detail}
        if self.value is not None and len(self.value) > MAX_VALUE_BYTES:
            letter["value_bytes"] = len(self.value)
        return to_json(letter)

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        obj = orjson.loads(data)
        common = {name: obj.pop(name, None) for name in
                  ("kind", "error", "topic", "partition", "offset", "index", "key", "value")}
        obj.pop("value_bytes", None)
        for name in ("key", "value"):
            if common[name] is not None:
                common[name] = base64.b64decode(common[name])
        return cls(**common, detail=obj)
