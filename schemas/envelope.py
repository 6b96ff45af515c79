"""Envelopes: many records of one partition in one Kafka message.

faust-streaming spends 100-200 µs of CPU on every Kafka message it hands an agent, whatever the
message holds, and aiokafka about 20 µs on every message it sends (docs/benchmarks.md). So
between our own processes one message carries the records of one partition that were ready
together: the gateway packs a raw partition's records while that partition's previous
envelope is in flight, and the processors pack their internal outputs per destination
partition. Topics that people and other programs read (``actions``, ``visits``, ``merges``,
``profiles``, ``deadletter``) keep one message per record.

Wire format: a msgpack array whose items are the records' own msgpack encodings. A writer
that holds encoded records packs them by concatenation (an array header, then the bytes),
never encoding them again; a reader decodes the whole envelope with one ``unpackb``. A raw
message from before envelopes (one record, a msgpack map) reads as an envelope of one. Pure.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import msgpack

HEADER_BYTES = 5  # the largest array header: 0xdd + 32-bit count
# The most a writer packs into one envelope before it starts the next (an item larger than this
# travels alone): well under every topic's message limit (``topics.MAX_MESSAGE_BYTES``). The
# producers that send envelopes take batches of this size too.
MAX_BYTES = 512 * 1024


class EnvelopeError(ValueError):
    """Bytes that are not an envelope (nor a single record)."""


def header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + struct.pack(">H", count)
    return b"\xdd" + struct.pack(">I", count)


def pack(items: Sequence[bytes]) -> bytes:
    """An envelope of already-encoded msgpack items, in order."""
    return header(len(items)) + b"".join(items)


def unpack(data: bytes) -> list[Any]:
    """The decoded items of an envelope; a lone map (a record from before envelopes) is an
    envelope of one."""
    try:
        decoded = msgpack.unpackb(data)
    except Exception as exc:  # msgpack raises several unrelated types
        raise EnvelopeError(f"not msgpack: {exc}") from exc
    if isinstance(decoded, list):
        return decoded
    if isinstance(decoded, dict):
        return [decoded]
    raise EnvelopeError(f"an envelope is a msgpack array, not {type(decoded).__name__}")
