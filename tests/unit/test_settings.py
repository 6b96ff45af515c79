from pathlib import Path

import pytest

from runtime.settings import Settings, SettingsError, documented_fields


def test_defaults():
    s = Settings.from_env({})
    assert (s.ack_deadline_ms, s.max_url_bytes, s.max_body_bytes, s.raw_partitions,
            s.topic("raw")) == (300, 65536, 1048576, 12, "trackpipe.raw")


def test_environment_and_overrides():
    s = Settings.from_env({"TRACKPIPE_ACK_DEADLINE_MS": "50", "TRACKPIPE_DATA_DIR": "/x",
                           "TRACKPIPE_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
                           "TRACKPIPE_HTTP_PORT": "1"}, http_port=9)
    assert s.ack_deadline_ms == 50 and s.data_dir == Path("/x") and s.http_port == 9
    assert s.trusted_proxies == ("10.0.0.0/8", "127.0.0.1") and len(s.trusted_networks) == 2


@pytest.mark.parametrize(("env", "message"), [
    ({"TRACKPIPE_HTTP_PORT": "eighty"}, "TRACKPIPE_HTTP_PORT"),
    ({"TRACKPIPE_ACK_DEADLINE_MS": "0"}, "TRACKPIPE_ACK_DEADLINE_MS"),
    ({"TRACKPIPE_TOPIC_PREFIX": "a/b"}, "TRACKPIPE_TOPIC_PREFIX"),
    ({"TRACKPIPE_TRUSTED_PROXIES": "nope"}, "TRACKPIPE_TRUSTED_PROXIES"),
    ({"TRACKPIPE_LOCAL_KAFKA_NODES": "2"}, "TRACKPIPE_LOCAL_KAFKA_NODES"),
    ({"TRACKPIPE_MAX_PUSH_EXPANSION": "4"}, "TRACKPIPE_MAX_PUSH_EXPANSION must be at least 8"),
    ({"TRACKPIPE_MAX_HEADER_COUNT": "0"}, "TRACKPIPE_MAX_HEADER_COUNT"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for variable, _default, doc in documented_fields():
        assert doc, variable
        assert f"`{variable}`" in readme, f"{variable} is missing from the README table"


def test_the_least_push_expansion_leaves_room_for_what_a_line_grows_to():
    """Below OWN_GROWTH, the estimate made before a push is decoded would refuse pushes whose
    records are within the bound."""
    from gateway.expansion import OWN_GROWTH
    from runtime.settings import MIN_PUSH_EXPANSION

    assert MIN_PUSH_EXPANSION > OWN_GROWTH
