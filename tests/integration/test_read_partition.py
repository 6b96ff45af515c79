"""Reading a stretch of one partition through the real broker (runtime.partition)."""

import pytest
from aiokafka import AIOKafkaProducer

from runtime.partition import read_partition
from schemas import topics

pytestmark = pytest.mark.integration


async def values(settings, **bounds):
    return [record.value async for record in read_partition(
        settings.kafka_bootstrap, settings.topic(topics.RAW), 1, **bounds)]


async def test_a_stretch_of_a_partition_and_the_whole_of_it(settings):
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(settings.topic(topics.RAW), str(i).encode(),
                                         partition=1)
        await producer.send_and_wait(settings.topic(topics.RAW), b"other", partition=0)
    finally:
        await producer.stop()
    assert await values(settings, start=3, end=7) == [b"3", b"4", b"5", b"6"]
    assert await values(settings) == [str(i).encode() for i in range(10)]
    assert await values(settings, start=8) == [b"8", b"9"]
    assert await values(settings, start=4, end=4) == []
