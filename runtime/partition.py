"""A topic's records between two offsets per partition, read with a group-less consumer.

Places that read a stretch of a topic on their own, outside any consumer group: a processor
fetching offsets its stream skipped, the triggers service reading what ``firings`` holds for a
partition it was given, and the tests and benchmarks reading a topic from its start to its end.
Each wants the records from one offset up to another and must end even where offsets are
missing (compaction, transaction markers), so the position, not the last record seen, says
when a partition is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


def read_partition(bootstrap: str, topic: str, partition: int, start: int | None = None,
                   end: int | None = None) -> AsyncIterator[Any]:
    """Records of ``topic[partition]`` from ``start`` (None: the first one kept) up to ``end``,
    exclusive (None: the end offset when reading begins)."""
    return _read(bootstrap, topic, [partition], start, end, {})


def read_topic(bootstrap: str, topic: str, partitions: Iterable[int],
               **consumer_options: Any) -> AsyncIterator[Any]:
    """Every record of ``topic``'s ``partitions`` from the first one kept up to each
    partition's end offset when reading begins: what they hold now. Each partition's records
    come in offset order; the partitions' are interleaved. ``consumer_options`` go to the
    consumer (``max_partition_fetch_bytes``, ...)."""
    return _read(bootstrap, topic, partitions, None, None, consumer_options)


async def _read(bootstrap: str, topic: str, partitions: Iterable[int], start: int | None,
                end: int | None, options: dict[str, Any]) -> AsyncIterator[Any]:
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps or (start is not None and end is not None and start >= end):
        return  # (and a group-less consumer stopped before it ever waited raises on stop)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **options)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = ({tp: end for tp in tps} if end is not None
                else await consumer.end_offsets(tps))
        if start is None:
            await consumer.seek_to_beginning(*tps)  # at once: one by one waits a fetch round each
        else:
            for tp in tps:
                consumer.seek(tp, start)
        async for record in up_to(consumer, tps, ends):
            yield record
    finally:
        await consumer.stop()


async def up_to(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition],
                ends: dict[TopicPartition, int]) -> AsyncIterator[Any]:
    """The records of ``tps`` from the consumer's positions up to ``ends``, exclusive. A
    partition is read when its position reaches its end, whatever its last record was."""
    reading = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
    while reading:
        batches = await consumer.getmany(*reading, timeout_ms=1000)
        for tp, records in batches.items():
            for record in records:
                if record.offset < ends[tp]:
                    yield record
        reading = [tp for tp in reading if await consumer.position(tp) < ends[tp]]


async def committed_offsets(bootstrap: str, group_id: str, tps: list[TopicPartition]
                            ) -> dict[TopicPartition, int]:
    """The offsets ``group_id`` committed for ``tps`` (a partition it never committed is
    left out)."""
    if not tps:
        return {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group_id, partitions=tps)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
