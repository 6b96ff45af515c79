"""Packing a gateway's raw records into envelopes, one raw partition at a time.

Each record's partition is the one Kafka's default partitioner gives its key
(``schemas.partitioning``), so a visitor's records stay in order on one partition and the
processors' table routing finds them. A partition has at most one send in flight; while it
is, the partition's next envelope fills. So at low load a record goes out on the next loop
turn, alone (no added wait), and under load envelopes grow by themselves to what arrives
during one round trip to the broker. With a linger (``TRACKPIPE_ENVELOPE_LINGER_MS``) a
partition that has no send in flight waits that long before it sends, so that envelopes hold
more records for the processors (their cost is per Kafka message as much as per record) at the
price of that wait on every answer. An envelope is closed at ``max_bytes`` (a record larger
than that travels alone) and a round sends every envelope that is ready.

Every record of an envelope waits on the envelope's one future: its result once Kafka
acknowledged the message (``acks=all``), its exception if the send failed. What a caller does
with a slow or failed envelope (the spool) is ``gateway.publisher``'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError

from schemas import envelope
from schemas.partitioning import partition_for

log = logging.getLogger(__name__)

Send = Callable[[int, bytes], Awaitable[asyncio.Future]]  # (partition, value) → delivery


class Envelope:
    """Records bound for one partition, and the future they all wait on."""

    __slots__ = ("items", "size", "delivered")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: list[bytes] = []
        self.size = envelope.HEADER_BYTES
        self.delivered: asyncio.Future[None] = loop.create_future()

    def settle(self, delivery: asyncio.Future) -> None:
        if self.delivered.done():
            return
        if delivery.cancelled():
            self.delivered.set_exception(KafkaError("the send was cancelled"))
        elif delivery.exception() is not None:
            self.delivered.set_exception(delivery.exception())
        else:
            self.delivered.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.delivered.done():
            self.delivered.set_exception(exc)


class Packer:
    def __init__(self, send: Send, partitions: int, max_bytes: int,
                 on_sent: Callable[[int], None] = lambda records: None,
                 linger_s: float = 0.0) -> None:
        self._send = send
        self.partitions = partitions
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._on_sent = on_sent
        self._queued: dict[int, list[Envelope]] = {}  # partition → envelopes not yet sent
        self._in_flight: set[int] = set()
        self._kick_scheduled = False
        self._rounds: set[asyncio.Task[None]] = set()

    def add(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        """Queue one encoded record; the future settles when its envelope is in Kafka."""
        partition = partition_for(key, self.partitions)
        queued = self._queued.get(partition)
        if queued is None:
            queued = self._queued[partition] = [Envelope(asyncio.get_running_loop())]
        current = queued[-1]
        if current.items and current.size + len(value) > self.max_bytes:
            current = Envelope(asyncio.get_running_loop())
            queued.append(current)
        current.items.append(value)
        current.size += len(value)
        if partition not in self._in_flight and not self._kick_scheduled:
            self._kick_scheduled = True
            if self.linger_s:
                asyncio.get_running_loop().call_later(self.linger_s, self._kick)
            else:
                asyncio.get_running_loop().call_soon(self._kick)
        return current.delivered

    @property
    def idle(self) -> bool:
        return not self._queued and not self._in_flight

    async def wait_idle(self, timeout_s: float) -> None:
        """Let queued envelopes go and rounds in flight finish, for at most ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.idle and loop.time() < deadline:
            await asyncio.sleep(0.01)

    def _kick(self) -> None:
        self._kick_scheduled = False
        for partition in [p for p in self._queued if p not in self._in_flight]:
            self._in_flight.add(partition)
            task = asyncio.create_task(self._round(partition, self._queued.pop(partition)))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)

    async def _round(self, partition: int, envelopes: list[Envelope]) -> None:
        last: asyncio.Future | None = None
        try:
            for item in envelopes:
                try:
                    delivery = await self._send(partition, envelope.pack(item.items))
                except (KafkaError, OSError) as exc:
                    item.fail(exc)
                    continue
                delivery.add_done_callback(item.settle)
                self._on_sent(len(item.items))
                last = delivery
            if last is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(last)
        except BaseException as exc:  # cancelled on shutdown: nobody may wait forever
            for item in envelopes:
                item.fail(KafkaError(f"the send was abandoned: {exc!r}"))
            raise
        finally:
            self._in_flight.discard(partition)
            if partition in self._queued and not self._kick_scheduled:
                self._kick_scheduled = True
                asyncio.get_running_loop().call_soon(self._kick)
