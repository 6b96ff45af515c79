"""What the processors send: a message or an envelope no broker would take is replaced by a
dead letter saying what it was, so one oversized output never stops a worker."""

import pytest

from processors.outbound import MAX_MESSAGE_BYTES, Outbound
from schemas import envelope
from schemas.deadletter import DeadLetter
from schemas.partitioning import partition_for

PARTITIONS = {"actions": 4, "links": 4, "dl": 3}
HUGE = b"x" * (MAX_MESSAGE_BYTES + 1)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, list]] = []

    async def send(self, topic, partition, messages):
        self.sent.append((topic, partition, list(messages)))


@pytest.fixture
def outbound_factory():
    def make() -> tuple[Outbound, Recorder]:
        recorder = Recorder()
        return Outbound(recorder, PARTITIONS, "dl"), recorder
    return make


async def test_a_message_within_the_limit_goes_as_given(outbound_factory):
    outbound, recorder = outbound_factory()
    outbound.message("actions", b"k", b"an action")
    await outbound.flush()
    assert recorder.sent == [("actions", partition_for(b"k", 4), [(b"k", b"an action")])]
    assert outbound.oversized == 0


async def test_a_message_over_the_limit_is_dead_lettered_where_its_key_hashes(
        outbound_factory):
    outbound, recorder = outbound_factory()
    outbound.message("actions", b"k", HUGE, partition=2)
    await outbound.flush()
    letter = DeadLetter("output", f"a {len(HUGE)}-byte message is over the "
                        f"{MAX_MESSAGE_BYTES}-byte limit", "actions", 2, key=b"k", value=HUGE)
    assert recorder.sent == [("dl", partition_for(b"k", 3), [(b"k", letter.to_json())])]
    assert outbound.oversized == 1


async def test_a_tombstone_is_never_over_the_limit(outbound_factory):
    outbound, recorder = outbound_factory()
    outbound.message("actions", b"k", None, partition=1)
    await outbound.flush()
    assert recorder.sent == [("actions", 1, [(b"k", None)])]


async def test_an_item_alone_over_the_limit_is_dead_lettered_beside_its_partition(
        outbound_factory):
    outbound, recorder = outbound_factory()
    outbound.record("links", b"k", HUGE)
    outbound.record("links", b"k", b"small")
    await outbound.flush()
    partition = partition_for(b"k", 4)
    packed = envelope.pack([HUGE])
    letter = DeadLetter("output", f"a {len(packed)}-byte record is over the "
                        f"{MAX_MESSAGE_BYTES}-byte limit", "links", partition, value=packed)
    assert recorder.sent == [("dl", partition % 3, [(None, letter.to_json())]),
                             ("links", partition, [(None, envelope.pack([b"small"]))])]
    assert outbound.oversized == 1
