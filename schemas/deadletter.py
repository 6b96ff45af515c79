"""The one record of the ``deadletter`` topic, whatever service could not handle something.

Kinds, each made by its own constructor: ``record`` (``for_record``: a processor input it
could not handle, an envelope or one record of an envelope, ``index`` saying which),
``output`` (``oversized_output``: a processor output over the message limit, in its place),
``spool`` (``refused_spooled``: a spooled record Kafka refuses even alone), ``action``
(``unreadable_action``: an action the triggers service could not read) and ``trigger``
(``undelivered_firing``: a firing that was not delivered). Every letter says what failed
(``error``) and where the input was (``topic``, ``partition``, ``offset``); the input's own
bytes travel base64-encoded, cut to ``MAX_VALUE_BYTES`` with ``value_bytes`` giving the
original size, so a letter always fits in a Kafka message however large the input was.
Kind-specific fields (``detail``: a firing's delivery id, rule, webhook, action, profile) sit
beside them. JSON, keyed by the input's key. Pure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.firing import Firing
from schemas.jsonline import to_json

MAX_VALUE_BYTES = 256 * 1024


def _b64(data: bytes | None, limit: int) -> str | None:
    return None if data is None else base64.b64encode(data[:limit]).decode()


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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

    @classmethod
    def for_record(cls, exc: BaseException, topic: str, partition: int, offset: int,
                   key: bytes | None, value: bytes | None,
                   index: int | None = None) -> DeadLetter:
        """A processor input it could not handle: the message at ``offset``, or (``index``)
        one record of the envelope there."""
        return cls("record", _described(exc), topic, partition, offset, index, key, value)

    @classmethod
    def oversized_output(cls, what: str, topic: str, partition: int, key: bytes | None,
                         value: bytes, limit: int) -> DeadLetter:
        """A processor output (``what``: a message, or a record of an envelope) over the
        ``limit`` any topic takes, never sendable: the letter goes in its place."""
        return cls("output", f"a {len(value)}-byte {what} is over the {limit}-byte limit",
                   topic, partition, key=key, value=value)

    @classmethod
    def refused_spooled(cls, exc: BaseException, topic: str, value: bytes) -> DeadLetter:
        """A spooled record Kafka refuses even alone (spooled under larger limits than
        Kafka's now): it can never be delivered."""
        return cls("spool", _described(exc), topic, value=value)

    @classmethod
    def unreadable_action(cls, exc: BaseException, topic: str, partition: int, offset: int,
                          key: bytes | None, value: bytes | None) -> DeadLetter:
        """An action the triggers service could not read (so could fire nothing for)."""
        return cls("action", repr(exc), topic, partition, offset, key=key, value=value)

    @classmethod
    def undelivered_firing(cls, firing: Firing, why: str, topic: str) -> DeadLetter:
        """A firing given up (``why``), from ``topic`` (``firings``): what the receiver would
        have had, so that it can be sent again by hand."""
        rule = firing.rule
        return cls("trigger", why, topic, firing.partition, key=firing.id.encode(), detail={
            "delivery": firing.id, "trigger": rule.name, "project": rule.project,
            "webhook": rule.webhook, "action": firing.action, "profile": firing.profile})

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
