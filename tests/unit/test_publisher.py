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
