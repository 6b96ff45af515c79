"""Everything a worker sends, gathered between flushes and sent in as few messages as it can.

- **Public records** (``actions``, ``visits``, ``merges``, ``quota``, ``deadletter``): one
  Kafka message each, as outside consumers expect, to the partition Kafka's partitioner gives
  their key (``schemas.partitioning``).
- **Internal records** (``links``, ``rebinds``, ``profile-updates``, ``quota-counts``): items
  of envelopes (``schemas.envelope``), one message per destination partition per flush.
- **Table changes** (``processors.state``): one changelog message per dirty key, sent by
  ``send_changes`` when the worker commits (``processors.checkpoint``), after every output.

Messages of one partition are sent in the order they were given (one flush at a time), and
with aiokafka's batch API, which costs about a third of a ``send`` per message. A message the
broker could never take (over ``MAX_MESSAGE_BYTES``) is not sent: a dead letter saying what it
was takes its place, so that one oversized output can never stop a worker.

The transport sends one partition's messages; ``KafkaTransport`` does it through the aiokafka
producer faust flushes before it commits, and stops the worker when a message is not
delivered (see its docstring). Tests and benchmarks give a transport of their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from processors.guard import backoff
from processors.state import Change
from schemas import envelope, topics
from schemas.deadletter import DeadLetter
from schemas.partitioning import partition_for

log = logging.getLogger(__name__)

# under every topic's message limit, with room for the record batch around one message
MAX_MESSAGE_BYTES = topics.MAX_MESSAGE_BYTES - 64 * 1024
EXIT_UNDELIVERED = 70  # EX_SOFTWARE

Message = tuple[bytes | None, bytes | None]  # key, value (None: a tombstone)


class Transport(Protocol):
    async def send(self, topic: str, partition: int, messages: Sequence[Message]) -> None:
        """Queue ``messages`` for one partition, in order."""


class Outbound:
    def __init__(self, transport: Transport, partitions: Mapping[str, int],
                 deadletter: str) -> None:
        self.transport = transport
        self.partitions = partitions  # topic → partition count
        self.deadletter = deadletter
        self._messages: dict[tuple[str, int], list[Message]] = {}
        self._records: dict[tuple[str, int], list[bytes]] = {}
        self._lock = asyncio.Lock()
        self.sent = 0  # Kafka messages handed to the transport, for metrics and benchmarks
        self.oversized = 0

    def message(self, topic: str, key: bytes | None, value: bytes | None,
                partition: int | None = None) -> None:
        """One message; to ``partition``, else to the one its key hashes to."""
        if partition is None:
            partition = partition_for(key or b"", self.partitions[topic])
        topic, partition, value = self._sendable("message", topic, partition, key, value)
        self._messages.setdefault((topic, partition), []).append((key, value))

    def record(self, topic: str, key: bytes, item: bytes) -> None:
        """One encoded item of an envelope, to the partition its key hashes to."""
        partition = partition_for(key, self.partitions[topic])
        self._records.setdefault((topic, partition), []).append(item)

    @property
    def pending(self) -> bool:
        return bool(self._messages or self._records)

    async def flush(self) -> None:
        """Send what was gathered."""
        async with self._lock:
            batches, self._messages = self._messages, {}
            for (topic, partition), items in self._records.items():
                for packed in _envelopes(items):
                    self._add(batches, topic, partition, packed)
            self._records = {}
            await self._send_all(batches)

    async def send_changes(self, changes: Sequence[Change]) -> None:
        """Send tables' changelog messages (``TableState.changes``), a partition's in order."""
        batches: dict[tuple[str, int], list[Message]] = {}
        for changelog, key, value, partition in changes:
            batches.setdefault((changelog, partition), []).append((key, value))
        async with self._lock:
            await self._send_all(batches)

    async def _send_all(self, batches: dict[tuple[str, int], list[Message]]) -> None:
        for (topic, partition), messages in batches.items():
            await self._send(topic, partition, messages)
            self.sent += len(messages)

    async def _send(self, topic: str, partition: int, messages: list[Message]) -> None:
        """Hand one partition's messages to the transport, retrying while Kafka is away (the
        offsets they come from are not committed until this returns), with the backoff of
        ``processors.guard``."""
        waits = backoff()
        while True:
            try:
                await self.transport.send(topic, partition, messages)
                return
            except KafkaError as exc:
                wait_s = next(waits)
                log.warning("could not queue %d message(s) for %s[%d], retrying in %.1f s: %r",
                            len(messages), topic, partition, wait_s, exc)
                await asyncio.sleep(wait_s)

    def _add(self, batches: dict[tuple[str, int], list[Message]], topic: str, partition: int,
             value: bytes) -> None:
        # an envelope is over the limit only as one item alone (``_envelopes``)
        topic, partition, sendable = self._sendable("record", topic, partition, None, value)
        batches.setdefault((topic, partition), []).append((None, sendable))

    def _sendable(self, what: str, topic: str, partition: int, key: bytes | None,
                  value: bytes | None) -> tuple[str, int, bytes | None]:
        """Where a message goes and what it holds: as given, or, over ``MAX_MESSAGE_BYTES``
        (no broker would ever take it), a dead letter saying what it was, in its place, to
        the dead-letter partition its key hashes to (keyless: the one numbered like its
        own)."""
        if value is None or len(value) <= MAX_MESSAGE_BYTES:
            return topic, partition, value
        self.oversized += 1
        log.error("a %d-byte %s for %s is over the limit; dead-lettered instead", len(value),
                  what, topic)
        letter = DeadLetter.oversized_output(what, topic, partition, key, value,
                                             MAX_MESSAGE_BYTES).to_json()
        count = self.partitions[self.deadletter]
        return self.deadletter, (partition % count if key is None
                                 else partition_for(key, count)), letter


def _envelopes(items: list[bytes]) -> list[bytes]:
    """``items`` packed into envelopes of at most ``envelope.MAX_BYTES`` (an item larger than
    that travels alone)."""
    packed, start, size = [], 0, envelope.HEADER_BYTES
    for i, item in enumerate(items):
        if i > start and size + len(item) > envelope.MAX_BYTES:
            packed.append(envelope.pack(items[start:i]))
            start, size = i, envelope.HEADER_BYTES
        size += len(item)
    packed.append(envelope.pack(items[start:]))
    return packed


class KafkaTransport:
    """Sends through the aiokafka producer under faust's own: faust flushes that producer
    before it commits offsets (``Consumer.commit`` awaits ``producer.flush()``), so what a
    record caused is delivered before its offset is committed. A message the producer gives up
    on (after its own retries) stops the worker at once, before a commit can go past it: that
    is a crash the processors are built to survive (the next owner of the partitions reads the
    records again from the last commit, and ``processors.journal`` has what they sent), where
    going on would lose it."""

    def __init__(self, producer: Callable[[], Any],
                 delivered: Callable[[str, int, int], None] = lambda t, p, o: None,
                 stop: Callable[[int], Any] = os._exit) -> None:
        self._producer = producer
        self._on_delivered = delivered  # (topic, partition, offset of its last message)
        self._stop = stop

    async def send(self, topic: str, partition: int, messages: Sequence[Message]) -> None:
        producer = self._producer()
        batch, count = producer.create_batch(), 0
        for key, value in messages:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                await self._submit(producer, batch, count, topic, partition)
                batch, count = producer.create_batch(), 0
                batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any
            count += 1
        await self._submit(producer, batch, count, topic, partition)

    async def _submit(self, producer: Any, batch: Any, count: int, topic: str,
                      partition: int) -> None:
        delivery = await producer.send_batch(batch, topic, partition=partition)
        delivery.add_done_callback(lambda done: self._delivered(done, topic, partition, count))

    def _delivered(self, delivery: asyncio.Future, topic: str, partition: int,
                   count: int) -> None:
        if delivery.cancelled():  # the producer is stopping with the worker
            return
        if delivery.exception() is not None:
            log.critical("a message was not delivered, stopping the worker: %r",
                         delivery.exception())
            self._stop(EXIT_UNDELIVERED)
            return
        self._on_delivered(topic, partition, delivery.result().offset + count - 1)
