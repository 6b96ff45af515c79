"""The gateway's ingestion warnings with the publisher faked at the seam: which refusals make
which warning, that a flood makes counts and not records, that noting one never waits, and how
the buffer is sent (``gateway.warnings_buffer``). Through a real broker: test_operator_views."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.app import TrackingApp, route
from gateway.http import GatewayProtocol, HeadLimits
from gateway.metrics import Metrics
from gateway.projects import ProjectTable
from gateway.warnings_buffer import WarningBuffer
from runtime import prometheus as prom
from runtime.warning_budget import WarningBudget
from schemas.partitioning import partition_for
from schemas.project import ProjectRecord
from schemas.quota import QuotaState, month_of
from schemas.warning import IngestionWarning, Kind
from tests.waiting import wait_until_async


async def publish(key: bytes, value: bytes) -> int:
    return 200


@pytest.fixture
def make_client():
    def make(**buffer):
        projects = ProjectTable()
        projects.mark_loaded()
        for record in (ProjectRecord.build("shop.example", exclude_ips=("10.0.0.0/8",)),
                       ProjectRecord.build("secure.example", secret="s3cret")):
            projects.apply(record.name, record)
        metrics = Metrics()
        warnings = WarningBuffer("t.warnings", 4, metrics.warnings, **buffer)
        app = TrackingApp(projects, publish, metrics, max_url_bytes=65536,
                          max_body_bytes=4096, warnings=warnings)

        async def asgi(scope, receive, send):
            await app(scope, receive, send, *route(scope["path"]))

        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi, client=("10.1.2.3",
                                                                                    1)),
                                   base_url="http://gw")
        return client, app

    return make


@pytest.mark.parametrize(("params", "headers", "status", "kind", "project"), [
    ({"project": "nope.example"}, {}, 403, Kind.UNKNOWN_PROJECT, "nope.example"),
    ({"project": "secure.example"}, {}, 401, Kind.UNAUTHENTICATED, "secure.example"),
    ({"project": "shop.example"}, {}, 403, Kind.EXCLUDED, "shop.example"),
], ids=["unknown-project", "unauthenticated", "excluded"])
async def test_a_refusal_for_the_project_is_a_warning_with_the_event_id(
        make_client, params, headers, status, kind, project):
    client, app = make_client()
    async with client:
        answer = await client.get("/track/ce", params={**params, "event": "pv", "cookie": "c1"},
                                  headers=headers)
    assert answer.status_code == status
    [warning] = app.warnings.held
    assert (warning.kind, warning.project, warning.event_id) == (
        kind, project, answer.headers["x-event-id"])
    assert warning.service == "gateway" and "event=pv" in warning.sample


async def test_an_authenticated_request_is_no_warning(make_client):
    client, app = make_client()
    auth = "Basic " + base64.b64encode(b"sdk:s3cret").decode()
    async with client:
        answer = await client.get("/track/ce", params={"project": "secure.example"},
                                  headers={"Authorization": auth})
    assert answer.status_code == 200 and not app.warnings.held


async def test_a_request_over_its_quota_is_logged_answered_402_and_warned(make_client):
    client, app = make_client()
    app.quotas = {"secure.example": QuotaState("secure.example", month_of(
        int(app.ids.next()[1])), 10, 10)}
    auth = "Basic " + base64.b64encode(b"sdk:s3cret").decode()
    async with client:
        answer = await client.get("/track/ce", params={"project": "secure.example"},
                                  headers={"Authorization": auth})
    assert answer.status_code == 402
    assert [w.kind for w in app.warnings.held] == [Kind.OVER_QUOTA]


async def test_a_flood_of_made_up_names_makes_counts_not_records(make_client):
    client, app = make_client()
    async with client:
        for i in range(60):
            await client.get("/track/ce", params={"project": f"made-up-{i}\x1b[2J"})
    assert len(app.warnings.held) == 20  # the budget's records a minute
    assert app.warnings.held[0].project == "made-up-0\\x1b[2J"  # escaped, as sent
    series = prom.parse(app.metrics.render())
    assert prom.by_label(series, "trackpipe_warnings_total", "project") == {"": 60.0}
    assert prom.total(series, "trackpipe_warnings_unrecorded_total") == 40


def test_noting_a_warning_never_waits_and_the_buffer_is_bounded():
    buffer = WarningBuffer("t.warnings", 4, WarningBudget(per_minute=10_000), max_held=5)
    for i in range(8):
        buffer.note(f"p{i}", Kind.EXCLUDED, "why", f"e{i}", lambda: "sample")
    assert len(buffer.held) == 5 and buffer.dropped == 3


def test_a_sample_is_made_only_for_a_warning_that_is_recorded():
    buffer = WarningBuffer("t.warnings", 4, WarningBudget(per_minute=1))
    asked = []
    for _ in range(3):
        buffer.note("p", Kind.EXCLUDED, "why", "e", lambda: asked.append(1) or "s")
    assert len(asked) == 1


class FakeProducer:
    def __init__(self, fail: bool = False):
        self.fail = fail
        self.sent = []

    async def send(self, topic, value, key, partition):
        if self.fail:
            raise KafkaConnectionError()
        self.sent.append((topic, partition, key, IngestionWarning.from_json(value)))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_held_warnings_go_to_their_projects_partition_and_wait_out_kafka():
    buffer = WarningBuffer("t.warnings", 4, WarningBudget())
    for project in ("a.example", "b.example"):
        buffer.note(project, Kind.OVER_QUOTA, "why", "e", lambda: "s")
    assert await buffer.flush(None) == 0 and len(buffer.held) == 2  # no producer yet
    assert await buffer.flush(FakeProducer(fail=True)) == 0 and len(buffer.held) == 2
    producer = FakeProducer()
    assert await buffer.flush(producer) == 2 and not buffer.held
    assert [(p, k) for _, p, k, _ in producer.sent] == [
        (partition_for(b"a.example", 4), b"a.example"),
        (partition_for(b"b.example", 4), b"b.example")]


async def test_the_sending_task_outlives_an_error_that_is_not_kafkas():
    buffer = WarningBuffer("t.warnings", 4, WarningBudget())
    buffer.note("a.example", Kind.OVER_QUOTA, "why", "e", lambda: "s")
    producer, calls = FakeProducer(), []

    def current():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug, once")
        return producer

    task = asyncio.create_task(buffer.run(current, every_s=0.001))
    try:
        await wait_until_async(lambda: producer.sent, 5, "the task stopped after the error")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_head_the_protocol_refuses_is_counted_as_a_431():
    counted = []

    class App:
        def head_refused(self):
            counted.append(431)

        async def __call__(self, scope, receive, send):
            pass

    config = Config(app=App(), log_config=None, lifespan="off")
    config.load()
    protocol = GatewayProtocol(config=config, server_state=ServerState(), app_state={},
                               limits=HeadLimits(65535, 10, 256, 100))

    class Transport(asyncio.Transport):
        closing = False

        def get_extra_info(self, name, default=None):
            return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

        def write(self, data):
            pass

        def close(self):
            self.closing = True

        def is_closing(self):
            return self.closing

    protocol.connection_made(Transport())
    protocol.data_received(b"GET /track/ce HTTP/1.1\r\nX-Big: " + b"v" * 400 + b"\r\n\r\n")
    assert counted == [431]
