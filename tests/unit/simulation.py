"""A processor worker simulated over an in-memory log of topics, for tests of the stages and
the commit order without a broker (``test_checkpoint``, ``test_golden``): it reads its source
topics from the group's committed offsets, hands what the stages send to a producer that
delivers only when flushed, commits as faust does (offsets chosen, then the producer's flush —
the checkpoint — then the offsets), and a new one recovers each table as faust does (the store
it finds, then the changelog after the offset the store says it holds; on another host, the
whole changelog)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from processors.guard import each_item
from processors.pipeline import STATE, Stages
from runtime import compacted
from runtime.settings import Settings
from schemas import topics

PARTITIONS = 4


class Killed(Exception):
    """The worker process died here."""


@dataclass
class Log:
    """What survives a worker: delivered messages, committed offsets, the local stores and
    the offsets they say they hold (RocksDB's)."""
    topics: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = field(
        default_factory=dict)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    stores: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    persisted: dict[tuple[str, int], int] = field(default_factory=dict)

    def append(self, topic: str, partition: int, messages) -> int:
        log = self.topics.setdefault((topic, partition), [])
        log.extend(messages)
        return len(log) - 1

    def latest(self, topic: str) -> dict[bytes, bytes]:
        """A compacted topic as its readers see it: each key's last value."""
        out: dict[bytes, bytes] = {}
        for (name, _), messages in sorted(self.topics.items()):
            if name == topic:
                for key, value in messages:
                    compacted.apply(out, key, value)
        return out


class Producer:
    """Queues what it is given; Kafka has it once ``deliver`` runs (the producer's flush)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.in_flight: list[tuple[str, int, list]] = []
        self.on_delivered = lambda topic, partition, offset: None

    async def send(self, topic, partition, messages):
        self.in_flight.append((topic, partition, list(messages)))

    def deliver_now(self, fate: str = "delivered") -> None:
        """Deliver what is in flight: all of it, none ("lost") or the first half of each
        partition's ("half": a partition's messages arrive in order, or not at all)."""
        pending, self.in_flight = self.in_flight, []
        if fate == "half":
            by_partition: dict[tuple[str, int], list] = {}
            for topic, partition, messages in pending:
                by_partition.setdefault((topic, partition), []).extend(messages)
            pending = [(t, p, m[: len(m) // 2]) for (t, p), m in by_partition.items()]
        elif fate == "lost":
            pending = []
        for topic, partition, messages in pending:
            if messages:
                last = self.log.append(topic, partition, messages)
                self.on_delivered(topic, partition, last)


SOURCES = (topics.RAW, topics.REBINDS, topics.LINKS, topics.PROFILE_UPDATES, topics.QUOTA_COUNTS)



def item_by_item(handle: Callable[[int, Any], None]) -> Callable[[int, int, bytes], None]:
    """An internal envelope handled as the worker handles it (``processors.guard.each_item``);
    an item's own fault fails the simulation."""
    def fail(message: Any, exc: BaseException, index: int, item: bytes) -> None:
        raise exc

    return lambda partition, offset, value: each_item(
        SimpleNamespace(topic="", partition=partition, offset=offset, value=value), handle, fail)

class SimulatedWorker:
    """One worker holding every partition, as ``processors.worker.Worker`` wires the stages,
    with faust's consumer, commit and table recovery played by hand."""

    def __init__(self, settings: Settings, log: Log, same_host: bool = True) -> None:
        self.settings = settings
        self.log = log
        self.producer = Producer(log)
        t = settings.topic
        self.changelogs = {name: t(topics.CHANGELOGS[name]) for name in STATE}
        if not same_host:
            log.stores, log.persisted = {}, {}
        stores = {name: self._recover(name) for name in STATE}
        self.stages = Stages(settings, self.producer, stores, self.changelogs,
                             self._deliver, self._persisted)
        self.producer.on_delivered = self.stages.checkpoint.delivered
        self.positions = dict(log.committed)  # next offset to read, per source partition
        self.handlers = {
            t(topics.RAW): lambda p, o, v: self.stages.visitors.handle_raw(p, o, v),
            t(topics.REBINDS): item_by_item(self.stages.visitors.handle_rebind),
            t(topics.LINKS): item_by_item(self.stages.identities.handle_link),
            t(topics.PROFILE_UPDATES): item_by_item(self.stages.profiles.handle_change),
            t(topics.QUOTA_COUNTS): item_by_item(self.stages.quotas.handle_count),
        }
        self.sources = [(t(name), p) for name in SOURCES for p in range(PARTITIONS)]
        self.handled = 0
        self.crash_after_handled: int | None = None
        self.during_commit = 0  # messages handled while a commit awaits Kafka

    def _recover(self, name: str) -> dict[bytes, bytes]:
        """faust's recovery: the store as found, then the changelog after its offset."""
        store = self.log.stores.setdefault(name, {})
        changelog = self.changelogs[name]
        for partition in range(PARTITIONS):
            start = self.log.persisted.get((changelog, partition), -1) + 1
            for key, value in self.log.topics.get((changelog, partition), [])[start:]:
                compacted.apply(store, key, value)
            end = len(self.log.topics.get((changelog, partition), [])) - 1
            if end >= 0:
                self.log.persisted[(changelog, partition)] = end
        return store

    def _persisted(self, changelog: str, partition: int, offset: int) -> None:
        self.log.persisted[(changelog, partition)] = offset

    async def _deliver(self) -> None:
        # Agents go on while a commit awaits Kafka: what they handle joins the next commit.
        for _ in range(self.during_commit):
            self.step()
        self.producer.deliver_now()

    def step(self) -> bool:
        """Handle the next message (the sources in turn); False when there is none."""
        for source in self.sources:
            messages = self.log.topics.get(source, [])
            offset = self.positions.get(source, 0)
            if offset < len(messages):
                self.handlers[source[0]](source[1], offset, messages[offset][1])
                self.positions[source] = offset + 1
                self.handled += 1
                self.sources.append(self.sources.pop(self.sources.index(source)))
                if self.crash_after_handled == self.handled:
                    raise Killed()
                return True
        return False

    async def commit(self) -> None:
        chosen = dict(self.positions)  # faust picks the offsets before it flushes
        await self.stages.commit()
        self.log.committed.update(chosen)

    async def run(self, flush_every: int = 3, commit_every: int = 7) -> None:
        """Until every topic is read and everything sent is delivered and committed."""
        while True:
            while self.step():
                if self.handled % flush_every == 0:
                    await self.stages.outbound.flush()  # the 50 ms timer: handed, in flight
                if self.handled % commit_every == 0:
                    await self.commit()
            await self.stages.outbound.flush()
            await self.commit()
            if self.log.committed == self.positions and not self.stages.outbound.pending and all(
                    self.positions.get(s, 0) == len(self.log.topics.get(s, []))
                    for s in self.sources):
                return
