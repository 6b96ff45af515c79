"""Profiles exactly once across a crash at every point of the commit order.

A worker is simulated over an in-memory log of topics (no broker: this checks the stages and
the commit order, ``processors.checkpoint``, not Kafka): it reads its source topics from the
group's committed offsets, hands what the stages send to a producer that delivers only when
flushed, and commits as faust does (offsets chosen, then the producer's flush — the
checkpoint — then the offsets). A crash stops it between two steps of a commit, or between
two messages, with what was in flight lost, delivered, or half delivered; a new worker then
recovers each table as faust does (the store it finds, then the changelog after the offset
the store says it holds; or, on another host, the whole changelog) and goes on from the
committed offsets. Whatever the crash, the profiles published and the day logs equal those
of a run without one.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import orjson
import pytest

from logstore.reading import read_lines
from processors import profiles
from processors.checkpoint import STEPS
from processors.worker import STATE, Stages
from runtime.settings import Settings
from schemas import envelope, topics
from schemas.raw import RawRecord

DAY = "2027-01-15"
RECEIVED_MS = 1_800_000_000_000  # 2027-01-15
PARTITIONS = 4
PROJECT = "shop.example"


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
                    if value is None:
                        out.pop(key, None)
                    else:
                        out[key] = value
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
            t(topics.REBINDS): lambda p, o, v: self.stages.visitors.handle_rebinds(p, v),
            t(topics.LINKS): lambda p, o, v: self.stages.identities.handle_links(p, v),
            t(topics.PROFILE_UPDATES): lambda p, o, v: self.stages.profiles.handle_changes(p, v),
            t(topics.QUOTA_COUNTS): lambda p, o, v: self.stages.quotas.handle_counts(p, v),
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
                if value is None:
                    store.pop(key, None)
                else:
                    store[key] = value
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


def raw(n: int, cookie: str, **params: str) -> RawRecord:
    query = "&".join(f"{k}={v}" for k, v in {"event": "pv", "cookie": cookie, **params}.items())
    return RawRecord(id=f"00000000-0000-7000-8000-{n:012d}", received_ms=RECEIVED_MS + n,
                     endpoint="ce", project=PROJECT, ip="192.0.2.1", query=query.encode(),
                     visitor_key=f"cookie:{cookie}")


def traffic(settings: Settings, log: Log) -> None:
    """People on several devices, four pageviews each, then identified: emails merge the
    devices, an id merges the email's profile, and one person's merges form a chain."""
    from schemas.partitioning import partition_for

    n = itertools.count()
    batches: list[list[RawRecord]] = []
    people = {"ann": ["a1", "a2", "a3"], "bob": ["b1", "b2"], "cy": ["c1", "c2", "c3", "c4"]}
    for devices in people.values():
        for cookie in devices:
            batches.append([raw(next(n), cookie) for _ in range(4)])
    for person, devices in people.items():
        for i, cookie in enumerate(devices):
            extra = {"cv_id": f"id-{person}"} if i == len(devices) - 1 else {}
            batches.append([raw(next(n), cookie, cv_email=f"{person}@x.example", **extra)])
    batches.append([raw(next(n), "c2", cv_name="Cy")])
    raw_topic = settings.topic(topics.RAW)
    for batch in batches:
        by_partition: dict[int, list[RawRecord]] = {}
        for record in batch:
            by_partition.setdefault(partition_for(record.kafka_key(), PARTITIONS), []).append(
                record)
        for partition, records in by_partition.items():
            log.append(raw_topic, partition,
                       [(None, envelope.pack([r.to_bytes() for r in records]))])


def outcome(settings: Settings, log: Log) -> tuple[dict, dict, list]:
    """What a reader sees: every surviving profile (as `trackpipe profile` shows it), the
    survivor each merged profile leads to, and the day-log lines. (A merged profile's own
    state is frozen when it is merged, and whether a change reached it just before or just
    after depends on timing, crash or not: its survivor has the change either way.)"""
    published = {key.decode().split("\n")[1]: profiles.shown(orjson.loads(value))
                 for key, value in log.latest(settings.topic(topics.PROFILES)).items()}

    def survivor(profile_id: str) -> str:
        into = published[profile_id]["merged_into"]
        return profile_id if into is None else survivor(into)

    survivors = {}
    for profile_id, shown in published.items():
        if shown["merged_into"] is None:
            for kind in ("merged_from", "ids", "emails", "cookies"):
                shown[kind] = sorted(shown[kind])
            survivors[profile_id] = shown
    merged = {profile_id: survivor(profile_id) for profile_id in published}
    lines = sorted(line["id"] for line in read_lines(settings.data_dir / "logs", PROJECT, [DAY]))
    return survivors, merged, lines


async def run_with(tmp_path, name: str, crash=None, fate: str = "lost", same_host: bool = True,
                   during_commit: int = 0):
    settings = Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path / name,
                        raw_partitions=PARTITIONS)
    log = Log()
    traffic(settings, log)
    worker = SimulatedWorker(settings, log)
    worker.during_commit = during_commit
    try:
        await crashed_then_run(worker, settings, log, crash, fate, same_host)
    finally:
        for made in worker.made:
            made.stages.close()  # (a killed process's files are closed by its exit)
    return outcome(settings, log)


async def crashed_then_run(worker, settings, log, crash, fate, same_host):
    made = worker.made = [worker]
    if crash is None:
        await worker.run()
        return
    kind, where = crash
    if kind == "message":
        worker.crash_after_handled = where
    else:
        step, commit_number = where

        def reached(at: str) -> None:
            if at == step and worker.stages.checkpoint.commits + 1 == commit_number:
                raise Killed()

        worker.stages.checkpoint.reached = reached
    with pytest.raises(Killed):  # a crash that never happens would test nothing
        await worker.run()
    worker.producer.deliver_now(fate)
    restarted = SimulatedWorker(settings, log, same_host)
    made.append(restarted)
    await restarted.run()


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    survivors, merged, lines = clean = asyncio.run(run_with(tmp_path_factory.mktemp("clean"),
                                                            "clean"))
    assert len(survivors) == 3 and len(lines) == 46  # three people, every device merged
    assert sorted(len(p["cookies"]) for p in survivors.values()) == [2, 3, 4]
    assert sorted(p["actions"] for p in survivors.values()) == [10, 15, 21]
    assert set(merged.values()) == set(survivors)
    return clean


CRASHES = [("commit", (step, number)) for step in STEPS for number in (1, 3, 5, 7, 9, 11)]


@pytest.mark.parametrize("fate", ["lost", "delivered", "half"])
@pytest.mark.parametrize("same_host", [True, False], ids=["same-host", "new-host"])
@pytest.mark.parametrize("crash", CRASHES, ids=[f"{s}@{n}" for _, (s, n) in CRASHES])
async def test_a_crash_between_any_two_commit_steps_changes_no_profile(
        tmp_path, expected, crash, fate, same_host):
    assert await run_with(tmp_path, "crashed", crash, fate, same_host, during_commit=2) == \
        expected


@pytest.mark.parametrize("fate", ["lost", "delivered", "half"])
@pytest.mark.parametrize("handled", range(3, 64, 3))
async def test_a_crash_between_two_messages_changes_no_profile(tmp_path, expected, handled,
                                                              fate):
    assert await run_with(tmp_path, "crashed", ("message", handled), fate) == expected


async def test_a_commit_delivers_outputs_then_changelogs_then_writes_the_store():
    """The order itself, as the events a commit causes: nothing reaches the store before
    the changelog is delivered, nor the changelog before the outputs."""
    from processors.checkpoint import Checkpoint
    from processors.outbound import Outbound
    from processors.state import TableState

    events = []

    class Store(dict):
        def put(self, key, value, partition):
            events.append(("store", key))
            self[key] = value

    class Transport:
        async def send(self, topic, partition, messages):
            events.append(("sent", topic))

    async def deliver():
        events.append(("delivered",))

    table = TableState("t-changelog", Store(), lambda v: v, lambda b: b)
    outbound = Outbound(Transport(), {"actions": 1, "dl": 1}, "dl")
    checkpoint = Checkpoint([table], outbound, lambda: events.append(("synced",)), deliver,
                            lambda *offset: events.append(("persisted", *offset)))
    table.put(b"k", b"v1", 0)
    outbound.message("actions", b"k", b"an action")
    await checkpoint.run()  # the changelog's delivery is reported after the store is written
    checkpoint.delivered("t-changelog", 0, 41)
    assert table.get(b"k") == b"v1" and table.store == {b"k": b"v1"}
    assert events == [("synced",), ("sent", "actions"), ("delivered",), ("sent", "t-changelog"),
                      ("delivered",), ("store", b"k")]
    table.put(b"k", b"v2", 0)
    events.clear()
    await checkpoint.run()
    assert events[-2:] == [("store", b"k"), ("persisted", "t-changelog", 0, 41)]
