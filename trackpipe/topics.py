"""Creating trackpipe's topics explicitly (never by auto-creation), from schemas.topics."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import TOPICS
from trackpipe.settings import Settings


def topic_configs(settings: Settings) -> list[NewTopic]:
    topics = []
    for spec in TOPICS:
        config = {"cleanup.policy": "compact"} if spec.compacted else {}
        if spec.retention_ms is not None:
            config["retention.ms"] = str(spec.retention_ms)
        if settings.replication_factor >= 3:
            config["min.insync.replicas"] = "2"
        topics.append(NewTopic(
            name=settings.topic(spec.name),
            num_partitions=spec.partitions or settings.raw_partitions,
            replication_factor=settings.replication_factor,
            topic_configs=config))
    return topics


async def create_topics(settings: Settings, bootstrap: str) -> list[str]:
    """Create every missing topic; returns the names that were created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_configs(settings) if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process raced us; that is fine
        return [t.name for t in missing]
    finally:
        await admin.close()
