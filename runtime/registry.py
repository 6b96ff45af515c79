"""The project registry in its compacted Kafka topic: read it, follow it, change it.

The topic is the source of truth: one record per project keyed by its canonical name, a
tombstone for a removed one. The CLI reads it to the end before a change (to refuse an ``add``
of an existing project or an alias that another project owns) and writes with ``acks=all``.
Every gateway follows it from the beginning with a group-less consumer, so a change reaches
every replica within about a second, without a restart. ``follow`` serves the other compacted
topics that processes keep a view of (the quota states) the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from runtime import compacted
from schemas.project import ProjectError, ProjectRecord

log = logging.getLogger(__name__)

METADATA_TRIES = 20


async def _consumer(bootstrap: str, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest")
    try:
        await consumer.start()
        parts = None
        for _ in range(METADATA_TRIES):  # a topic created a moment ago may not be known yet
            # aiokafka has no public call for a fresh topic's partitions without a group.
            cluster = await consumer._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(topic)
            if parts:
                break
            await asyncio.sleep(0.25)
        if not parts:
            raise ProjectError(f"topic {topic!r} does not exist: run `trackpipe topics create`")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
    except BaseException:  # including cancellation: never leave a started consumer behind
        await consumer.stop()
        raise
    return consumer, tps


def _decode(key: bytes | None, value: bytes | None,
            decode: Callable[[bytes], Any]) -> tuple[str, Any] | None:
    if key is None:
        return None
    try:
        return key.decode(), (decode(value) if value is not None else None)
    except Exception:  # a record this version cannot read must not stop the follower
        log.exception("skipping unreadable record %r", key)
        return None


async def follow(bootstrap: str, topic: str, on_change: Callable[[str, Any], None],
                 on_caught_up: Callable[[], None],
                 decode: Callable[[bytes], Any] = ProjectRecord.from_bytes) -> None:
    """Apply every record of a compacted topic (the registry by default), forever; call
    ``on_caught_up`` once the existing ones are in (every time the follower starts again)."""
    consumer, tps = await _consumer(bootstrap, topic)
    try:
        end = await consumer.end_offsets(tps)
        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for msg in records:
                    change = _decode(msg.key, msg.value, decode)
                    if change is not None:
                        on_change(*change)
            if not caught_up and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                caught_up = True
                on_caught_up()
    finally:
        await consumer.stop()


async def follow_forever(bootstrap: str, topic: str, on_change: Callable[[str, Any], None],
                         on_caught_up: Callable[[], None],
                         decode: Callable[[bytes], Any] = ProjectRecord.from_bytes) -> None:
    """``follow``, started again after any failure (Kafka away at start, or gone later):
    the view kept so far stays in use meanwhile."""
    while True:
        try:
            await follow(bootstrap, topic, on_change, on_caught_up, decode)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("following %s: %s; retrying", topic, exc)
            await asyncio.sleep(1)


async def read_all(bootstrap: str, topic: str,
                   decode: Callable[[bytes], Any] = ProjectRecord.from_bytes) -> dict[str, Any]:
    """Every live record of a compacted topic (the registry by default), by key."""
    projects: dict[str, Any] = {}
    caught_up = asyncio.Event()
    task = asyncio.create_task(follow(bootstrap, topic, partial(compacted.apply, projects),
                                      caught_up.set, decode))
    waiter = asyncio.create_task(caught_up.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=30,
                                 return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    waiter.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)
    if task in done and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    if waiter not in done:
        raise TimeoutError(f"could not read the topic {topic!r} within 30 s")
    return projects


async def write(bootstrap: str, topic: str, name: str, record: Any) -> None:
    """Publish a definition (anything with ``to_bytes``, or a tombstone when ``record`` is
    None), acknowledged by all in-sync replicas."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, None if record is None else record.to_bytes(),
                                     key=name.encode())
    finally:
        await producer.stop()


def check_aliases(projects: dict[str, ProjectRecord], record: ProjectRecord) -> None:
    """Refuse a name or alias that another project already answers to."""
    taken = {}
    for other in projects.values():
        if other.name == record.name:
            continue
        taken[other.name] = other.name
        for alias in other.aliases:
            taken[alias] = other.name
    for name in (record.name, *record.aliases):
        if name in taken:
            raise ProjectError(f"{name!r} already belongs to project {taken[name]!r}")
