"""The recent records of a topic: from a time on, or the last few of each partition, up to
where each partition ends when reading begins. What an operator's views read (``trackpipe
warnings``, ``trackpipe deadletters``, the dashboard's latest warnings), with a group-less
consumer: reading never moves anyone's offsets.

A time is Kafka's record timestamp (when the producer wrote it), found with the broker's own
index (``offsets_for_times``), so ``--since 1h`` reads an hour of a week-long topic, not the
week.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from runtime.partition import up_to
from schemas.partitioning import partition_for


async def read_recent(bootstrap: str, topic: str, *, key: bytes | None = None,
                      since_ms: int | None = None, last: int | None = None,
                      **options: Any) -> AsyncIterator[Any]:
    """Records of ``topic`` (of the partition ``key`` hashes to, else of every partition)
    written at ``since_ms`` or later and, with ``last``, only a partition's last ``last``;
    each partition in offset order, the partitions' interleaved."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **options)
    await consumer.start()
    try:
        # aiokafka has no public call for a topic's partitions without a group
        cluster = await consumer._client.fetch_all_metadata()
        found = sorted(cluster.partitions_for_topic(topic) or ())
        if not found:
            return
        numbers = [partition_for(key, len(found))] if key is not None else found
        tps = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        if since_ms is not None:
            at = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            starts = {tp: ends[tp] if at[tp] is None else max(starts[tp], at[tp].offset)
                      for tp in tps}
        if last is not None:
            starts = {tp: max(starts[tp], ends[tp] - last) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        async for record in up_to(consumer, tps, ends):
            yield record
    finally:
        await consumer.stop()


async def read_one(bootstrap: str, topic: str, partition: int, offset: int) -> Any | None:
    """The record at ``topic[partition]@offset``; None when the topic holds none there (no
    such partition, an offset past its end, or before what it keeps)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="none")
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        if partition not in (cluster.partitions_for_topic(topic) or ()):
            return None
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= offset < end:
            return None
        consumer.seek(tp, offset)
        while await consumer.position(tp) <= offset:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.offset >= offset:
                    return record if record.offset == offset else None
        return None  # compacted or a transaction marker: nothing at that offset
    finally:
        await consumer.stop()
