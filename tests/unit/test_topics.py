"""The topic configurations `trackpipe topics create` asks for (no broker: the NewTopic list)."""

from runtime.settings import Settings
from runtime.topics import topic_configs
from schemas import topics


def configs(**settings):
    made = Settings(kafka_bootstrap="127.0.0.1:1", raw_partitions=6, **settings)
    return {t.name.removeprefix(made.topic_prefix): t for t in topic_configs(made)}


LIMIT = {"max.message.bytes": str(topics.MAX_MESSAGE_BYTES)}


def test_compacted_topics_keep_every_key_and_js_actions_expire_after_a_week():
    made = configs()
    assert made[topics.PROJECTS].topic_configs == {"cleanup.policy": "compact", **LIMIT}
    assert made[topics.PROFILES].topic_configs == {"cleanup.policy": "compact", **LIMIT}
    assert made[topics.JS_ACTIONS].topic_configs == {
        "cleanup.policy": "compact,delete", "retention.ms": str(7 * 24 * 3_600_000),
        "segment.ms": str(24 * 3_600_000), **LIMIT}
    assert made[topics.TICKS].topic_configs == {"retention.ms": str(3_600_000), **LIMIT}
    assert made[topics.RAW].topic_configs == LIMIT


def test_every_topic_takes_the_largest_record_a_gateway_accepts():
    """A 1 MiB body plus a 64 KiB URL, as msgpack, fits a raw record, and a raw record fits
    every topic's message limit with room for the JSON its action becomes."""
    from schemas.raw import RawRecord

    biggest = RawRecord(id="e", received_ms=1, endpoint="ce", project="p", ip="1.2.3.4",
                        query=b"q" * 65536, form={"f": "x" * (1024 * 1024)})
    assert len(biggest.to_bytes()) < topics.MAX_RECORD_BYTES <= topics.MAX_MESSAGE_BYTES // 2
    assert all(int(t.topic_configs["max.message.bytes"]) == topics.MAX_MESSAGE_BYTES
               for t in configs().values())


def test_partitions_and_replication_follow_the_settings():
    made = configs(replication_factor=3)
    assert made[topics.RAW].num_partitions == 6 and made[topics.PROJECTS].num_partitions == 1
    assert all(t.replication_factor == 3 for t in made.values())
    assert all(t.topic_configs["min.insync.replicas"] == "2" for t in made.values())
