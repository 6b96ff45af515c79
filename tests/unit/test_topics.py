"""The topic configurations `trackpipe topics create` asks for (no broker: the NewTopic list)."""

from schemas import topics
from trackpipe.settings import Settings
from trackpipe.topics import topic_configs


def configs(**settings):
    made = Settings(kafka_bootstrap="127.0.0.1:1", raw_partitions=6, **settings)
    return {t.name.removeprefix(made.topic_prefix): t for t in topic_configs(made)}


def test_compacted_topics_keep_every_key_and_js_actions_expire_after_a_week():
    made = configs()
    assert made[topics.PROJECTS].topic_configs == {"cleanup.policy": "compact"}
    assert made[topics.PROFILES].topic_configs == {"cleanup.policy": "compact"}
    assert made[topics.JS_ACTIONS].topic_configs == {
        "cleanup.policy": "compact,delete", "retention.ms": str(7 * 24 * 3_600_000),
        "segment.ms": str(24 * 3_600_000)}
    assert made[topics.TICKS].topic_configs == {"retention.ms": str(3_600_000)}
    assert made[topics.RAW].topic_configs == {}


def test_partitions_and_replication_follow_the_settings():
    made = configs(replication_factor=3)
    assert made[topics.RAW].num_partitions == 6 and made[topics.PROJECTS].num_partitions == 1
    assert all(t.replication_factor == 3 for t in made.values())
    assert all(t.topic_configs["min.insync.replicas"] == "2" for t in made.values())
