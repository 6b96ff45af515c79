"""Creating trackpipe's topics explicitly (never by auto-creation), from schemas.topics."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from runtime.settings import Settings
from schemas.topics import MAX_MESSAGE_BYTES, TOPICS


def topic_configs(settings: Settings) -> list[NewTopic]:
    topics = []
    for spec in TOPICS:
        config = {"cleanup.policy": "compact"} if spec.compacted else {}
        config["max.message.bytes"] = str(MAX_MESSAGE_BYTES)
        if spec.retention_ms is not None:
            config["retention.ms"] = str(spec.retention_ms)
            if spec.compacted:  # the latest record of a key is kept, but not forever
                config["cleanup.policy"] = "compact,delete"
                config["segment.ms"] = str(min(spec.retention_ms, 24 * 3_600_000))
        if settings.replication_factor >= 3:
            config["min.insync.replicas"] = "2"
        topics.append(NewTopic(
            name=settings.topic(spec.name),
            num_partitions=spec.partitions or settings.raw_partitions,
            replication_factor=settings.replication_factor,
            topic_configs=config))
    return topics


async def create_topics(settings: Settings, bootstrap: str, timeout_s: float = 30) -> list[str]:
    """Create every missing topic and wait until each partition has a leader, so that what
    runs next (a gateway's first request, a CLI command) finds them usable; returns the names
    that were created."""
    wanted = topic_configs(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process raced us; that is fine
    finally:
        await admin.close()
    await _wait_for_leaders(bootstrap, {t.name: t.num_partitions for t in wanted}, timeout_s)
    return [t.name for t in missing]


async def _wait_for_leaders(bootstrap: str, partitions: dict[str, int], timeout_s: float) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            cluster = await client.fetch_all_metadata()
            leaderless = [f"{topic}[{p}]" for topic, count in partitions.items()
                          for p in range(count)
                          if cluster.leader_for_partition(TopicPartition(topic, p)) in (None, -1)]
            if not leaderless:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaError(f"no leader after {timeout_s:.0f} s for {leaderless[:5]}")
            await asyncio.sleep(0.2)
    finally:
        await client.close()
