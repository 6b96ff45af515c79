"""The raw record: one accepted tracking request, as the gateway received it.

The gateway decides only what it must (project, visitor key, admission) and carries the rest
exactly as received, so that its hot path stays small: the query string travels as the original
bytes and the body as the parameters it decoded. ``params()`` gives what every later reader
wants: all parameters, the body merged over the query, values decoded (``+`` is a space,
non-UTF-8 bytes replaced).

Encoding: a msgpack map with a schema version ``v``. Readers accept unknown keys and refuse a
newer major version with ``SchemaError``, which a processor sends to the dead-letter topic.
A ``msgspec`` Struct: built, encoded and decoded in C (an envelope of them is decoded in one
call, ``decode_records``), the same bytes as the dict msgpack packed before.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.query import parse_query

SCHEMA_VERSION = 1


class SchemaError(ValueError):
    """Bytes that are not a raw record this code can read."""


class RawRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    v: int = SCHEMA_VERSION
    """The schema version (written first, as it always was)."""
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
    form: dict[str, Any] = msgspec.field(default_factory=dict)
    """Parameters decoded from the body (form, multipart, JSON or a push line)."""
    visitor_key: str = ""
    """What the record is keyed by: see schemas.identifiers."""
    over_quota: bool = False
    """The project was over its monthly quota: logged, but triggers must not run."""
    anonymize_ip: bool = False
    """The project anonymized addresses when the request was received (``--ip-anonymize``).
    The processors also follow the registry, but a worker may read a project's record a moment
    after the gateway did: the request itself says it, so that its first records are kept as
    private as the project asked. False: the registry decides (also for every record of a
    gateway from before this field)."""
    locate: bool = True
    """False: the project had ``--no-location`` when the request was received (the same
    reason; True: the registry decides)."""

    def params(self) -> dict[str, Any]:
        """All parameters, body over query; the last of repeated names wins."""
        merged: dict[str, Any] = dict(
            parse_query(self.query.decode("utf-8", "replace"), keep_blank_values=True))
        merged.update(self.form)
        return merged

    def kafka_key(self) -> bytes:
        return kafka_key(self.project, self.visitor_key, self.id)

    def to_bytes(self) -> bytes:
        return _encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> RawRecord:
        try:
            obj = msgspec.msgpack.decode(data)
        except msgspec.DecodeError as exc:
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
            return msgspec.convert(obj, cls)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"raw record: {exc}") from exc


_encode = msgspec.msgpack.Encoder().encode
_typed = msgspec.msgpack.Decoder(list[RawRecord])


def decode_records(data: bytes) -> list[RawRecord] | None:
    """The records of a raw envelope, decoded as one typed array in C; None unless every item
    is a record of this version (then take the items one by one: ``envelope.unpack`` and
    ``RawRecord.from_obj``, so that a bad one stays its own)."""
    try:
        records = _typed.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if any(record.v != SCHEMA_VERSION for record in records):
        return None
    return records


def kafka_key(project: str, visitor_key: str, event_id: str) -> bytes:
    """Project plus visitor key keeps a device's requests in order on one partition.

    A request with no identifier has no device to keep in order with, so its event id spreads
    such requests over all partitions.
    """
    return f"{project}\n{visitor_key or event_id}".encode()
