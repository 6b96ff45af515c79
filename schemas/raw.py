"""The raw record: one accepted tracking request, as the gateway received it.

The gateway decides only what it must (project, visitor key, admission) and carries the rest
exactly as received, so that its hot path stays small: the query string travels as the original
bytes and the body as the parameters it decoded. ``params()`` gives what every later reader
wants: all parameters, the body merged over the query, values decoded (``+`` is a space,
non-UTF-8 bytes replaced).

Encoding: a msgpack map with a schema version ``v``. Readers accept unknown keys and refuse a
newer major version with ``SchemaError``, which a processor sends to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from schemas.query import parse_query

SCHEMA_VERSION = 1


class SchemaError(ValueError):
    """Bytes that are not a raw record this code can read."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    id: str
    """Event id: a UUIDv7, time-ordered; senders may dedupe on it (X-Event-Id)."""
    received_ms: int
    """Receipt time at the gateway, unix ms (UTC)."""
    endpoint: str
    """One of ``schemas.endpoints.RECORDED`` (a push batch becomes a record per line)."""
    project: str
    """The registered project's canonical name (never the alias that was sent)."""
    ip: str
    """Client address after the trusted-proxy rules and the `ip` parameter."""
    user_agent: str = ""
    referer: str = ""
    language: str = ""
    query: bytes = b""
    """The query string exactly as received."""
    form: dict[str, Any] = field(default_factory=dict)
    """Parameters decoded from the body (form, multipart, JSON or a push line)."""
    visitor_key: str = ""
    """What the record is keyed by: see schemas.identifiers."""
    over_quota: bool = False
    """The project was over its monthly quota: logged, but triggers must not run."""

    def params(self) -> dict[str, Any]:
        """All parameters, body over query; the last of repeated names wins."""
        merged: dict[str, Any] = dict(
            parse_query(self.query.decode("utf-8", "replace"), keep_blank_values=True))
        merged.update(self.form)
        return merged

    def kafka_key(self) -> bytes:
        return kafka_key(self.project, self.visitor_key, self.id)

    def to_bytes(self) -> bytes:
        return msgpack.packb({
            "v": SCHEMA_VERSION, "id": self.id, "received_ms": self.received_ms,
            "endpoint": self.endpoint, "project": self.project, "ip": self.ip,
            "user_agent": self.user_agent, "referer": self.referer, "language": self.language,
            "query": self.query, "form": self.form, "visitor_key": self.visitor_key,
            "over_quota": self.over_quota,
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> RawRecord:
        try:
            obj = msgpack.unpackb(data)
        except Exception as exc:  # msgpack raises several unrelated types
            raise SchemaError(f"not msgpack: {exc}") from exc
        return cls.from_obj(obj)

    @classmethod
    def from_obj(cls, obj: Any) -> RawRecord:
        """A record from its decoded msgpack map (an item of an envelope)."""
        if not isinstance(obj, dict):
            raise SchemaError("raw record is not a map")
        if obj.get("v") != SCHEMA_VERSION:
            raise SchemaError(f"unsupported raw record version {obj.get('v')!r}")
        try:
            return cls(**{k: obj[k] for k in _FIELDS if k in obj})
        except TypeError as exc:
            raise SchemaError(f"raw record is missing a field: {exc}") from exc


_FIELDS = tuple(RawRecord.__dataclass_fields__)


def kafka_key(project: str, visitor_key: str, event_id: str) -> bytes:
    """Project plus visitor key keeps a device's requests in order on one partition.

    A request with no identifier has no device to keep in order with, so its event id spreads
    such requests over all partitions.
    """
    return f"{project}\n{visitor_key or event_id}".encode()
