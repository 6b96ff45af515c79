"""A partition is written by the one worker that holds its lock (processors.ownership,
issue 21): a worker the group dropped without its knowing goes on handling its partitions, and
the next owner must neither read the journal nor write before it lets go. The workers here are
processes of their own sharing a data folder, as containers share the compose volumes."""

import asyncio
import logging
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from logstore.reading import read_lines
from processors.ownership import Ownership
from processors.pipeline import Stages
from runtime.settings import Settings
from schemas import envelope
from schemas.raw import RawRecord
from tests.compose.evidence import journal_frames

ROOT = Path(__file__).parents[2]
DAY = "2027-01-15"
RECEIVED_MS = 1_800_000_000_000  # 2027-01-15


class Transport:
    async def send(self, topic, partition, messages):
        pass


def stages_in(data_dir: Path) -> Stages:
    return Stages(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=data_dir, raw_partitions=4),
                  Transport())


def ownership_of(stages: Stages, **options) -> Ownership:
    """The worker's wiring: the locks beside the journal, the stage told what it took."""
    return Ownership(stages.visitors.journal.root, taken=stages.visitors.forget, **options)


def envelope_at(offset: int) -> bytes:
    """The raw envelope at ``offset``: two requests."""
    return envelope.pack([RawRecord(
        id=f"00000000-0000-7000-8000-{offset:08d}{i:04d}", received_ms=RECEIVED_MS + offset,
        endpoint="ce", project="shop.example", ip="192.0.2.1",
        query=f"event=pv&cookie=c{offset % 3}".encode(), visitor_key=f"cookie:c{offset % 3}",
    ).to_bytes() for i in range(2)])


def dropped_worker(data_dir: str) -> None:
    """A worker (run as a process of its own) that holds partition 0 and handles offsets 0-4,
    says so, then, dropped by the group without knowing it, handles 5-9 as they arrive, and
    lets go at its next rebalance."""
    async def main() -> None:
        stages = stages_in(Path(data_dir))
        ownership = ownership_of(stages)
        ownership.assigned([0])
        await ownership.own(0)
        for offset in range(5):
            stages.visitors.handle_raw(0, offset, envelope_at(offset))
        print("holding", flush=True)
        for offset in range(5, 10):
            await asyncio.sleep(0.1)
            stages.visitors.handle_raw(0, offset, envelope_at(offset))
        ownership.revoked()  # it learnt it was dropped: faust revoked everything
        stages.close()

    asyncio.run(main())


def start(code: str) -> subprocess.Popen:
    """A Python process running ``code``, which says "holding" once it holds its lock."""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline() == "holding\n"
    return child


async def test_the_next_owner_of_a_dropped_worker_s_partition_logs_each_request_once(tmp_path):
    stages = stages_in(tmp_path)  # the next owner, running already
    ownership = ownership_of(stages)
    dropped = start(f"from tests.unit.test_ownership import dropped_worker; "
                    f"dropped_worker({str(tmp_path)!r})")
    try:
        # The group gave partition 0 to this worker; the last commit was at offset 5. Without
        # the lock it would read the journal now (offset 4) and decide 5-9 a second time.
        ownership.assigned([0])
        await asyncio.wait_for(ownership.own(0), 30)
        assert stages.visitors.position(0) == 9  # read once the dropped worker let go
        for offset in range(5, 13):  # faust hands the partition over from the commit
            stages.visitors.handle_raw(0, offset, envelope_at(offset))
        stages.close()
    finally:
        dropped.wait(30)
        dropped.stdout.close()
    ids = Counter(line["id"] for line in read_lines(tmp_path / "logs", "shop.example", [DAY]))
    assert len(ids) == 26 and set(ids.values()) == {1}, ids.most_common(3)
    frames = journal_frames(tmp_path / "processors" / "journal")
    assert [f.offset for f in frames["part-000.journal"]] == list(range(13))  # each once


async def test_a_killed_worker_s_locks_are_let_go_by_the_kernel(tmp_path):
    holder = start(f"import time; from pathlib import Path; "
                   f"from processors.ownership import Ownership; o = Ownership(Path("
                   f"{str(tmp_path)!r})); assert o._try(2) is not None; print('holding', "
                   f"flush=True); time.sleep(600)")
    try:
        ownership = Ownership(tmp_path, poll_s=0.02)
        ownership.assigned([2])
        taking = asyncio.ensure_future(ownership.own(2))
        done, _ = await asyncio.wait([taking], timeout=0.5)
        assert not done and not ownership.holds(2)  # it waits, it does not write around
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(taking, 10)
        assert ownership.holds(2)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


async def test_the_assignment_s_locks_are_taken_in_order_all_before_any_message(tmp_path):
    taken = []
    first, second = Ownership(tmp_path, poll_s=0.02), Ownership(tmp_path, taken=taken.append,
                                                                poll_s=0.02)
    first.assigned([1, 3])
    await first.own(3)
    assert first.holds(1) and first.holds(3)
    second.assigned([0, 1, 2])
    waiting = asyncio.ensure_future(second.own(0))
    done, _ = await asyncio.wait([waiting], timeout=0.3)
    # partition 0 is free, but nothing of the assignment is handled before it all is held
    assert not done and not any(map(second.holds, (0, 1, 2)))
    first.revoked()
    await asyncio.wait_for(waiting, 10)
    assert all(map(second.holds, (0, 1, 2))) and taken == [[0, 1, 2]]
    first.assigned([3])
    await asyncio.wait_for(first.own(3), 10)  # nobody held it


async def test_a_new_assignment_abandons_a_wait_for_a_partition_no_longer_assigned(tmp_path):
    first, second = Ownership(tmp_path, poll_s=0.02), Ownership(tmp_path, poll_s=0.02)
    first.assigned([1])
    await first.own(1)
    second.assigned([1, 2])
    waiting = asyncio.ensure_future(second.own(2))
    done, _ = await asyncio.wait([waiting], timeout=0.2)
    assert not done
    second.assigned([2])  # a rebalance gave partition 1 to someone else meanwhile
    assert await asyncio.wait_for(waiting, 10) is True
    assert second.holds(2) and not second.holds(1) and first.holds(1)


async def test_a_message_of_a_partition_not_assigned_is_left_to_its_owner(tmp_path):
    """faust can hand over a message from before a rebalance: its partition's lock is not
    taken (its new owner would wait for it for as long as this worker lives)."""
    ownership, other = Ownership(tmp_path), Ownership(tmp_path)
    ownership.assigned([6, 7])
    assert await ownership.own(0) is False and not ownership.holds(0)
    assert await ownership.own(6) is True and ownership.holds(7)
    other.assigned([0])
    assert await asyncio.wait_for(other.own(0), 1) is True
    ownership.revoked()  # and until the next assignment, nothing is this worker's
    assert await ownership.own(6) is False and not ownership.holds(6)
    other.assigned([6])
    assert await asyncio.wait_for(other.own(6), 1) is True


async def test_a_long_wait_is_said_and_so_is_its_end(tmp_path, caplog):
    first, second = Ownership(tmp_path), Ownership(tmp_path, poll_s=0.02, warn_every_s=0.1)
    first.assigned([5])
    await first.own(5)
    second.assigned([5])
    waiting = asyncio.ensure_future(second.own(5))
    with caplog.at_level(logging.WARNING, logger="processors.ownership"):
        await asyncio.wait([waiting], timeout=0.35)
        first.revoked()
        await asyncio.wait_for(waiting, 10)
    said = [r.getMessage() for r in caplog.records]
    assert any("another worker still holds" in s and "part-005.lock" in s for s in said), said
    assert "its lock is this worker's after" in said[-1]


async def test_a_worker_locks_the_raw_partitions_it_is_assigned_not_faust_s_leader_topic(
        tmp_path):
    """faust's assignor topic has one partition, 0, assigned to the group's leader: taken as a
    raw partition, its lock was held by the leader for good, and partition 0's owner waited."""
    from aiokafka import TopicPartition
    from faust.types import TP

    from processors.worker import Worker

    settings = Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path)
    worker = Worker(settings, "127.0.0.1:1", 6071)
    raw = worker.raw_topic
    await worker._on_assigned(None, {TP(raw, 3), TP(raw, 5), TP(settings.topic("links"), 3),
                                     TP(settings.topic("links"), 5),
                                     TP(settings.topic("processors-__assignor-__leader"), 0)})
    assert worker._lag_of(TopicPartition(raw, 3)) is None  # no journal read before the lock
    assert await worker.ownership.own(3) is True
    assert worker.ownership.holds(5) and not worker.ownership.holds(0)
    assert await worker.ownership.own(0) is False
    other = Ownership(worker.stages.visitors.journal.root)
    other.assigned([0])
    assert await asyncio.wait_for(other.own(0), 1) is True
    await worker._on_revoked(None, set())
    assert not worker.ownership.holds(3)
    worker.stages.close()
