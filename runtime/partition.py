"""One partition's records between two offsets, read with a group-less consumer.

Two places read a stretch of a partition on their own, outside their consumer group: a
processor fetching offsets its stream skipped, and the triggers service reading what
``firings`` holds for a partition it was given. Both want the records from one offset up to
another and must end even where offsets are missing (compaction, transaction markers), so the
position, not the last record seen, says when the stretch is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def read_partition(bootstrap: str, topic: str, partition: int, start: int | None = None,
                         end: int | None = None) -> AsyncIterator[Any]:
    """Records of ``topic[partition]`` from ``start`` (None: the first one kept) up to ``end``,
    exclusive (None: the end offset when reading begins)."""
    if start is not None and end is not None and start >= end:
        return  # (and a group-less consumer stopped before it ever waited raises on stop)
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        if end is None:
            end = (await consumer.end_offsets([tp]))[tp]
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.offset >= end:
                    return
                yield record
    finally:
        await consumer.stop()


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
