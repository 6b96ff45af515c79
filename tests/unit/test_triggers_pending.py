"""The owned partitions of ``firings``: a firing is started at most once at a time and never
again once finished, whoever reads its partition; deliveries in flight stay bounded."""

import asyncio
from collections import defaultdict

import pytest

from runtime import compacted
from schemas.firing import Firing
from schemas.trigger import TriggerRule
from triggers import pending as pending_module
from triggers.pending import PendingFirings


def firing(n: int, partition: int = 0) -> Firing:
    rule = TriggerRule.build("shop", "r", "signup", webhook="https://h.example/x")
    return Firing(f"e{n}/r", partition, rule, {"id": f"e{n}"}, None)


class Topic:
    """``firings`` in memory. A read's end is taken when it begins, as ``read_partition``
    does; ``gate``, when given, holds the read there (records go on being written)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Firing | None]] = []
        self.gate: asyncio.Event | None = None

    def write(self, f: Firing) -> None:
        self.records.append((f.id, f))

    async def read(self, partition: int) -> list[Firing]:
        snapshot = [(k, f) for k, f in self.records if f is None or f.partition == partition]
        if self.gate is not None:
            await self.gate.wait()
        view: dict[str, Firing] = {}
        for key, value in snapshot:
            compacted.apply(view, key, value)
        return list(view.values())


class Receiver:
    """Delivers a firing once ``open`` (tombstoning it), or leaves it pending
    (``finishes=False``: held, or its partition left)."""

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self.calls: list[str] = []
        self.open = asyncio.Event()
        self.finishes = True

    async def deliver(self, f: Firing, leaving: asyncio.Event) -> bool:
        self.calls.append(f.id)
        await self.open.wait()
        if self.finishes:
            self.topic.records.append((f.id, None))
        return self.finishes


async def settled() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def parts():
    topic = Topic()
    receiver = Receiver(topic)
    return topic, receiver, PendingFirings(topic.read, receiver.deliver, defaultdict(int),
                                           grace_s=1)


async def test_what_a_partition_holds_when_assigned_is_started_before_its_actions(parts):
    topic, receiver, pending = parts
    topic.write(firing(1))
    topic.write(firing(2, partition=1))
    await pending.resume([0])
    await pending.loaded(0)
    await settled()
    assert receiver.calls == ["e1/r"]
    assert pending.fresh(0, [firing(1), firing(3)]) == [firing(3)]  # e1: pending, not new


async def test_a_firing_made_lately_is_not_made_again(parts):
    _, _, pending = parts
    await pending.resume([0])
    assert pending.fresh(0, [firing(1)]) == [firing(1)]
    assert pending.fresh(0, [firing(1)]) == []  # a crashed processor sent its action again


async def test_a_pass_reading_again_leaves_a_just_written_firing_to_the_consumer(parts):
    """The consumer wrote a firing and awaits its commit; a pass reading the partition again
    meanwhile sees it pending. It is started once, by the consumer."""
    topic, receiver, pending = parts
    receiver.open.set()
    await pending.resume([0])
    fresh = pending.fresh(0, [firing(1)])
    topic.write(firing(1))
    pending.reread([0])
    await pending.reread_now()
    await settled()
    assert receiver.calls == []
    pending.committed(0, fresh)
    await settled()
    assert receiver.calls == ["e1/r"]


async def test_a_firing_finished_while_a_pass_reads_is_not_started_again(parts):
    """The pass read the partition's end while the firing ran; the firing is delivered and
    tombstoned before the pass starts what it read: the pass does not start it again."""
    topic, receiver, pending = parts
    topic.write(firing(1))
    await pending.resume([0])  # e1 runs, its receiver not answering yet
    topic.gate = asyncio.Event()
    pending.reread([0])
    rereading = asyncio.create_task(pending.reread_now())
    await settled()  # the pass has its end: e1 pending
    receiver.open.set()
    await settled()  # e1 delivered and tombstoned
    assert pending.in_flight == 0
    topic.gate.set()
    await rereading
    await settled()
    assert receiver.calls == ["e1/r"]


async def test_a_commit_that_failed_leaves_its_firings_to_any_reader(parts):
    topic, receiver, pending = parts
    receiver.open.set()
    await pending.resume([0])
    fresh = pending.fresh(0, [firing(1)])
    topic.write(firing(1))
    pending.not_committed(0, fresh)
    pending.reread([0])
    await pending.reread_now()
    await settled()
    assert receiver.calls == ["e1/r"]


async def test_past_the_bound_a_firing_waits_in_firings_and_goes_once_there_is_room(
        parts, monkeypatch):
    monkeypatch.setattr(pending_module, "MAX_DELIVERIES", 1)
    topic, receiver, pending = parts
    topic.write(firing(1))
    topic.write(firing(2))
    await pending.resume([0])
    await settled()
    assert receiver.calls == ["e1/r"] and pending.counts["deferred"] == 1
    await pending.reread_now()  # no room yet: nothing read
    assert receiver.calls == ["e1/r"]
    receiver.open.set()
    await settled()
    await pending.reread_now()
    await settled()
    assert receiver.calls == ["e1/r", "e2/r"]


async def test_a_held_firing_is_started_again_when_its_partition_is_read_again(parts):
    topic, receiver, pending = parts
    receiver.open.set()
    receiver.finishes = False  # held: its project has no signing secret
    topic.write(firing(1))
    await pending.resume([0])
    await settled()
    receiver.finishes = True  # the project has a secret now
    pending.reread([0])
    await pending.reread_now()
    await settled()
    assert receiver.calls == ["e1/r", "e1/r"]
    assert topic.records[-1] == ("e1/r", None)


async def test_a_partition_given_up_starts_nothing_more(parts):
    topic, receiver, pending = parts
    await pending.resume([0])
    topic.write(firing(1))
    topic.gate = asyncio.Event()
    pending.reread([0])
    rereading = asyncio.create_task(pending.reread_now())
    await settled()
    await pending.finish([0])  # revoked while the pass reads it
    topic.gate.set()
    await rereading
    pending.start(firing(1))
    await settled()
    assert receiver.calls == [] and pending.partitions == []


async def test_giving_a_partition_up_lets_requests_end_then_cancels_the_rest(parts):
    topic, receiver, pending = parts
    pending.grace_s = 0.05
    topic.write(firing(1))
    await pending.resume([0])
    await settled()
    assert pending.in_flight == 1
    await pending.finish([0])  # the receiver never answers: cut off after the grace
    await settled()
    assert pending.in_flight == 0 and topic.records == [("e1/r", firing(1))]  # still pending
