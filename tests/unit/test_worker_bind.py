"""Where a worker's web server binds, and when it asks for a token.

faust binds ``web_bind`` and only advertises ``web_host``, and its settings let variables of
the environment (``WEB_BIND``, ``WEB_PORT``...) override what the app was given. The worker
binds what ``TRACKPIPE_WORKER_WEB_HOST`` says and nothing else, so the settings' rule (a token
whenever that address is not loopback) is a rule about what is bound. The addresses actually
bound by each role are read from its sockets in ``tests/integration/test_listening.py``.
"""

from __future__ import annotations

import pytest

from processors.worker import Worker
from runtime.settings import Settings, SettingsError

FAUST_WEB_VARIABLES = {"WEB_BIND": "0.0.0.0", "WEB_HOST": "example.org", "WEB_PORT": "1",
                       "NODE_CANONICAL_URL": "http://example.org:1"}


@pytest.fixture
def make_worker(tmp_path):
    def make(port: int = 6070, **overrides: object) -> Worker:
        settings = Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path, **overrides)
        settings.validate()
        return Worker(settings, "127.0.0.1:1", port)

    return make


@pytest.mark.parametrize(("host", "token"), [
    ("127.0.0.1", ""),
    ("::1", ""),
    ("0.0.0.0", "secret"),
], ids=["loopback", "loopback-v6", "every-interface-with-token"])
def test_the_web_server_binds_the_settings_host_whatever_faust_variables_say(
        make_worker, monkeypatch, host, token):
    for name, value in FAUST_WEB_VARIABLES.items():
        monkeypatch.setenv(name, value)
    conf = make_worker(worker_web_host=host, worker_token=token).app.conf
    assert (conf.web_bind, conf.web_port) == (host, 6070)
    assert conf.web_host == host
    assert conf.canonical_url.port == 6070  # where other workers send routed lookups


@pytest.mark.parametrize(("host", "needs_token"), [
    ("127.0.0.1", False),
    ("127.0.0.2", False),
    ("::1", False),
    ("localhost", False),
    ("0.0.0.0", True),
    ("::", True),
    ("", True),
    ("10.1.2.3", True),
    ("::ffff:127.0.0.1", True),  # loopback only through a mapping: not taken on trust
    ("worker.internal", True),
], ids=["v4", "v4-other", "v6", "name-localhost", "any-v4", "any-v6", "empty", "private",
        "mapped", "other-name"])
def test_a_worker_bound_beyond_loopback_needs_its_token(host, needs_token):
    settings = Settings(worker_web_host=host)
    if needs_token:
        with pytest.raises(SettingsError, match="TRACKPIPE_WORKER_TOKEN"):
            settings.validate()
        Settings(worker_web_host=host, worker_token="secret").validate()
    else:
        settings.validate()
