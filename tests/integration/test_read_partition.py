"""Reading a stretch of one partition, and a whole topic, through the real broker
(runtime.partition)."""

import pytest
from aiokafka import AIOKafkaProducer

from runtime.partition import read_partition, read_topic
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


async def test_a_topic_from_its_start_to_its_end(settings):
    topic, partitions = settings.topic(topics.RAW), range(settings.raw_partitions)
    assert [r async for r in read_topic(settings.kafka_bootstrap, topic, partitions)] == []
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, str(i).encode(), partition=i % 2)
        await producer.send_and_wait(topic, b"three", partition=3)  # partition 2 stays empty
    finally:
        await producer.stop()
    whole = [r async for r in read_topic(settings.kafka_bootstrap, topic, partitions)]
    assert sorted((r.partition, r.offset, r.value) for r in whole) == [
        (0, 0, b"0"), (0, 1, b"2"), (0, 2, b"4"), (1, 0, b"1"), (1, 1, b"3"), (1, 2, b"5"),
        (3, 0, b"three")]
    for partition in (0, 1):  # each partition's records in offset order
        mine = [r.offset for r in whole if r.partition == partition]
        assert mine == sorted(mine)
    some = [r.value async for r in read_topic(settings.kafka_bootstrap, topic, [1, 2])]
    assert some == [b"1", b"3", b"5"]
