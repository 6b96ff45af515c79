"""The publisher's verdicts without a broker: before Kafka answers every record is spooled
(202), and a full spool is SpoolFull (503), never a silent drop."""

import pytest

from gateway.errors import SpoolFull
from gateway.metrics import Metrics
from gateway.publisher import Publisher
from gateway.spool import Spool


@pytest.fixture
def make_publisher(tmp_path):
    made = []

    def make(max_bytes=10**6):
        spool = Spool(tmp_path / "spool", max_bytes)
        spool.open()
        publisher = Publisher("127.0.0.1:1", "t.raw", spool, 300, Metrics())
        made.append(spool)
        return publisher

    yield make
    for spool in made:
        spool.close()


async def test_without_kafka_records_are_spooled_and_answered_202(make_publisher):
    publisher = make_publisher()
    assert not publisher.connected
    assert [await publisher.publish(b"k", b"v%d" % i) for i in range(3)] == [202] * 3
    assert [v for _, _, v in publisher.spool.unacked(10)] == [b"v0", b"v1", b"v2"]


async def test_a_full_spool_is_spool_full(make_publisher):
    publisher = make_publisher(max_bytes=40)
    assert await publisher.publish(b"k", b"x" * 10) == 202
    with pytest.raises(SpoolFull):
        await publisher.publish(b"k", b"x" * 30)
    assert publisher.spool.depth == 1


async def test_a_linger_lets_an_idle_partitions_envelope_fill_before_it_goes():
    """With a linger, records arriving within it share one envelope; without, the first
    goes alone on the next loop turn (no added wait at low load)."""
    import asyncio

    from gateway.envelopes import Packer

    async def run(linger_s):
        sent = []

        async def send(partition, value):
            sent.append(value)
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        packer = Packer(send, 1, 1 << 20, linger_s=linger_s)
        first = packer.add(b"k", b"\x01")
        await asyncio.sleep(0)  # a loop turn
        await asyncio.sleep(0)
        second = packer.add(b"k", b"\x02")
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        return sent

    assert len(await run(0)) == 2
    assert await run(0.05) == [b"\x92\x01\x02"]  # one envelope of both
