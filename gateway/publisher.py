"""Publishing raw records: Kafka within the deadline, else the spool, never lost.

Records travel in envelopes, many of one raw partition per Kafka message
(``gateway.envelopes``). ``publish`` answers 200 when Kafka acknowledged the envelope that
holds the record (``acks=all``, idempotent producer) within ``ack_deadline_ms``. Otherwise the
record alone is appended to the fsynced spool and the answer is 202. The envelope's send goes
on; if it succeeds the spool entry is marked delivered, if it fails the drainer sends the
entry again, in an envelope of its own making. The entry is written held (``Spool.append``):
the drainer does not see it until its original send has failed, so in a steady run every
record reaches Kafka exactly once; only a crash
between a delivery and its spool acknowledgement can send one twice, and the event id lets the
processors drop that copy.

The gateway also starts while Kafka is down: until the producer connects, every record goes
straight to the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from gateway.envelopes import Packer
from gateway.metrics import Metrics
from gateway.spool import EntryId, Spool, claim_orphans
from gateway.warnings_buffer import WarningBuffer
from schemas import envelope
from schemas.deadletter import DeadLetter
from schemas.partitioning import partition_for
from schemas.raw import RawRecord, SchemaError
from schemas.topics import MAX_MESSAGE_BYTES
from schemas.warning import Kind, request_sample

log = logging.getLogger(__name__)

DRAIN_BATCH = 500
DRAIN_IDLE_S = 0.5
RECONNECT_S = 1.0
ADOPT_EVERY_S = 10.0


class Publisher:
    def __init__(self, bootstrap: str, topic: str, spool: Spool, deadline_ms: int,
                 metrics: Metrics, deadletter: str = "", linger_ms: int = 0,
                 warnings: WarningBuffer | None = None) -> None:
        self.bootstrap = bootstrap
        self.warnings = warnings  # a spooled record dead-lettered is an ingestion warning
        self.linger_s = linger_ms / 1000
        self.topic = topic
        self.deadletter = deadletter
        self.spool = spool
        self.deadline_s = deadline_ms / 1000
        self.metrics = metrics
        self.producer: AIOKafkaProducer | None = None
        self.packer: Packer | None = None
        self._inflight: set[asyncio.Future] = set()  # first sends of spooled records
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        return self.producer is not None

    async def start(self) -> None:
        self.spool.open()
        self._tasks = [asyncio.create_task(self._connect(), name="publisher-connect"),
                       asyncio.create_task(self._drain(), name="publisher-drain")]

    async def stop(self, grace_s: float = 5.0) -> None:
        """Give in-flight sends a moment, then stop; what is not delivered stays spooled."""
        if self.packer is not None:
            await self.packer.wait_idle(grace_s)
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.producer is not None:
            await _close(self.producer, grace_s)
        self.spool.close()

    async def publish(self, key: bytes, value: bytes) -> int:
        """200 if Kafka acknowledged within the deadline, else 202 once spooled (or SpoolFull)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        delivery: asyncio.Future | None = None
        if self.packer is not None:
            delivery = self.packer.add(key, value)
            if await _within(delivery, started + self.deadline_s):
                if delivery.exception() is None:
                    self.metrics.observe_ack(loop.time() - started)
                    return 200
                self.metrics.kafka_errors += 1
                delivery = None
        entry = await self.spool.append(key, value, held=delivery is not None)
        if delivery is not None:
            self._inflight.add(delivery)
            delivery.add_done_callback(lambda f: self._settle(entry, f))
        return 202

    def _settle(self, entry: EntryId, delivery: asyncio.Future) -> None:
        self._inflight.discard(delivery)
        if not delivery.cancelled() and delivery.exception() is None:
            self.spool.ack(entry)  # (an ack the disk refuses is counted, never raised)
        else:
            self.spool.release(entry)  # the drainer sends it

    async def _connect(self) -> None:
        while self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                request_timeout_ms=30_000, linger_ms=0, max_batch_size=envelope.MAX_BYTES,
                max_request_size=MAX_MESSAGE_BYTES)
            try:
                await producer.start()
                partitions = len(await producer.partitions_for(self.topic))
            except (KafkaError, OSError) as exc:
                log.warning("kafka not reachable at %s (%s); spooling", self.bootstrap, exc)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(RECONNECT_S)
                continue

            async def send(partition: int, value: bytes,
                           producer: AIOKafkaProducer = producer) -> asyncio.Future:
                return await producer.send(self.topic, value, partition=partition)

            self.packer = Packer(send, partitions, envelope.MAX_BYTES, self.metrics.enveloped,
                                 self.linger_s)
            self.producer = producer
            log.info("connected to kafka at %s (%s has %d partitions)", self.bootstrap,
                     self.topic, partitions)

    async def _drain(self) -> None:
        """Deliver what the spool holds, forever: an error (a disk that refuses a read, a
        broker that refuses a send) is logged and counted, and the next round tries again."""
        adopted_at = -ADOPT_EVERY_S
        while True:
            sent = 0
            try:
                if self.producer is not None:
                    sent = await self._drain_once(self.producer, self.spool)
                    now = asyncio.get_running_loop().time()
                    if sent == 0 and now - adopted_at >= ADOPT_EVERY_S:
                        adopted_at = now
                        await self._adopt_orphans(self.producer)
                self.metrics.spool_depth = self.spool.depth
                self.metrics.spool_bytes = self.spool.bytes
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.spool_errors += 1
                log.exception("draining the spool failed; trying again")
            self.metrics.spool_lost = self.spool.lost
            self.metrics.spool_ack_errors = self.spool.errors
            if sent == 0:
                await asyncio.sleep(DRAIN_IDLE_S)

    async def _adopt_orphans(self, producer: AIOKafkaProducer) -> None:
        """Drain the slots that no live gateway process holds (see gateway.spool)."""
        for folder, fd in claim_orphans(self.spool.folder.parent, self.spool.folder):
            orphan = Spool(folder, self.spool.max_bytes)
            try:
                orphan.open()
                log.info("draining the orphaned spool %s (%d entries)", folder, orphan.depth)
                while await self._drain_once(producer, orphan):
                    pass
            finally:
                orphan.close()
                os.close(fd)

    async def _drain_once(self, producer: AIOKafkaProducer, spool: Spool) -> int:
        """Send up to ``DRAIN_BATCH`` spooled records, in envelopes per partition."""
        assert self.packer is not None
        by_partition: dict[int, list[list[tuple[EntryId, bytes]]]] = {}
        sizes: dict[int, int] = {}  # partition → bytes of its last group
        for entry, key, value in spool.unacked(DRAIN_BATCH):
            partition = partition_for(key, self.packer.partitions)
            groups = by_partition.setdefault(partition, [[]])
            if groups[-1] and sizes[partition] + len(value) > envelope.MAX_BYTES:
                groups.append([])
            if not groups[-1]:
                sizes[partition] = envelope.HEADER_BYTES
            groups[-1].append((entry, value))
            sizes[partition] += len(value)
        deliveries = []
        for partition, groups in by_partition.items():
            for group in groups:
                try:
                    value = envelope.pack([v for _, v in group])
                    deliveries.append((partition, group,
                                       await producer.send(self.topic, value,
                                                           partition=partition)))
                except KafkaError:
                    self.metrics.kafka_errors += 1
        delivered = 0
        for partition, group, delivery in deliveries:
            try:
                await delivery
            except MessageSizeTooLargeError:
                delivered += await self._too_large(producer, spool, partition, group)
                continue
            except KafkaError:
                self.metrics.kafka_errors += 1
                continue
            for entry, _ in group:
                spool.ack(entry)
            delivered += len(group)
        self.metrics.spool_drained += delivered
        return delivered

    async def _too_large(self, producer: AIOKafkaProducer, spool: Spool, partition: int,
                         group: list[tuple[EntryId, bytes]]) -> int:
        """An envelope Kafka refuses for its size: each record goes alone, and one that is
        still refused (it was spooled under larger limits than Kafka's now) can never be
        delivered: it goes to the dead-letter topic, cut to size, and leaves the spool, so it
        never holds up the entries behind it."""
        delivered = 0
        for entry, value in group:
            try:
                await (await producer.send(self.topic, envelope.pack([value]),
                                           partition=partition))
            except MessageSizeTooLargeError as exc:
                log.error("a spooled %d-byte record is more than Kafka takes: dead-lettered",
                          len(value))
                self.metrics.spool_refused += 1
                await producer.send_and_wait(self.deadletter, DeadLetter.refused_spooled(
                    exc, self.topic, value).to_json())
                self._warn_refused(value, exc)
            except KafkaError:
                self.metrics.kafka_errors += 1
                continue
            spool.ack(entry)
            delivered += 1
        return delivered


    def _warn_refused(self, value: bytes, exc: BaseException) -> None:
        if self.warnings is None:
            return
        try:
            record = RawRecord.from_bytes(value)
        except SchemaError:
            return
        self.warnings.note(record.project, Kind.DEAD_LETTER,
                           f"a spooled record Kafka refuses even alone "
                           f"({type(exc).__name__}): dead-lettered", record.id,
                           lambda: request_sample(record.endpoint, record.query, record.form))


async def _close(producer: AIOKafkaProducer, grace_s: float) -> None:
    """Stop the producer; if Kafka does not take the last batches within the grace, abandon
    them (they are in the spool) instead of letting them arrive after this gateway is gone,
    where the next gateway's drain would deliver them a second time."""
    stopping = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=grace_s)
    if not done:
        sender = getattr(producer, "_sender", None)  # aiokafka has no public abort
        if sender is not None and sender.sender_task is not None:
            sender.sender_task.cancel()
    with contextlib.suppress(KafkaError, asyncio.CancelledError):
        await stopping


async def _within(future: asyncio.Future, deadline: float) -> bool:
    """Wait for ``future`` until the loop time ``deadline``; True if it finished by then."""
    if future.done():
        return True
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    timer = loop.call_at(deadline, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
    return future.done()
