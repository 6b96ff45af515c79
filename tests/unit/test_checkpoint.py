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

import orjson
import pytest

from logstore.reading import read_lines
from processors import profiles
from processors.checkpoint import STEPS
from runtime.settings import Settings
from schemas import envelope, topics
from schemas.raw import RawRecord
from tests.unit.simulation import PARTITIONS, Killed, Log, SimulatedWorker

DAY = "2027-01-15"
RECEIVED_MS = 1_800_000_000_000  # 2027-01-15
PROJECT = "shop.example"


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
