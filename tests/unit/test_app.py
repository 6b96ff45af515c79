"""The tracking handler with a fake publisher injected at the seam: routing, methods, limits
and status mapping, fast and without a broker. What lands in Kafka is checked in
tests/integration against the real broker."""

import base64
import time

import httpx
import pytest

from gateway.app import TrackingApp, route
from gateway.errors import SpoolFull
from gateway.metrics import Metrics
from gateway.projects import ProjectTable
from schemas.project import ProjectRecord
from schemas.raw import RawRecord


class FakePublisher:
    def __init__(self, status=200):
        self.status = status
        self.records: list[RawRecord] = []

    async def __call__(self, key: bytes, value: bytes) -> int:
        if isinstance(self.status, Exception):
            raise self.status
        self.records.append(RawRecord.from_bytes(value))
        return self.status


@pytest.fixture
def make_client():
    def make(status=200, loaded=True, **limits):
        projects = ProjectTable()
        if loaded:
            projects.mark_loaded()
        for record in (ProjectRecord.build("shop.example"),
                       ProjectRecord.build("secure.example", secret="s3cret")):
            projects.apply(record.name, record)
        publisher = FakePublisher(status)
        app = TrackingApp(projects, publisher, Metrics(),
                          max_url_bytes=limits.get("max_url_bytes", 65536),
                          max_body_bytes=limits.get("max_body_bytes", 1024))

        async def asgi(scope, receive, send):
            await app(scope, receive, send, *route(scope["path"]))

        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi),
                                   base_url="http://gw")
        client.tracking = app  # for tests that change its quota view
        return client, publisher

    return make


@pytest.mark.parametrize(("path", "expected"), [
    ("/track/ce", ("ce", "")), ("/track/ce/", ("ce", "")), ("/track/identify", ("identify", "")),
    ("/track/update/", ("update", "")), ("/track/ping", ("ping", "")), ("/ping/", ("ping", "")),
    ("/track/push", ("push", "")), ("/track/tp/shop.example/ce", ("ce", "shop.example")),
    ("/track/tp/shop.example/identify/", ("identify", "shop.example")),
    ("/track/tp//ce", None), ("/track/tp/x/nope", None), ("/track/other", None), ("/", None),
])
def test_route(path, expected):
    assert route(path) == expected


@pytest.mark.parametrize(("status", "fmt", "body"), [
    (200, "js", b";"), (202, "js", b";"), (200, "json", b'{"success":true}'),
    (202, "xml", b'<response success="true"/>'),
])
async def test_publisher_verdict_becomes_the_status(make_client, status, fmt, body):
    client, publisher = make_client(status)
    async with client:
        r = await client.get(f"/track/ce?project=shop.example&response={fmt}")
    assert (r.status_code, r.content) == (status, body)
    assert r.headers["x-event-id"] == publisher.records[0].id


async def test_spool_full_is_503_with_retry_after(make_client):
    client, _ = make_client(SpoolFull())
    async with client:
        r = await client.get("/track/ce?project=shop.example&response=json")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json() == {"success": False, "message": SpoolFull.message}


async def test_before_the_registry_is_read_requests_are_503_not_403(make_client):
    client, publisher = make_client(loaded=False)
    async with client:
        r = await client.get("/track/ce?project=shop.example&response=json")
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert publisher.records == []


async def test_401_carries_www_authenticate_and_basic_auth_passes(make_client):
    client, publisher = make_client()
    async with client:
        refused = await client.get("/track/ce?project=secure.example")
        token = base64.b64encode(b"any:s3cret").decode()
        accepted = await client.get("/track/ce?project=secure.example",
                                    headers={"Authorization": f"Basic {token}"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert accepted.status_code == 200 and len(publisher.records) == 1


@pytest.mark.parametrize(("method", "status"), [("PUT", 400), ("DELETE", 400), ("HEAD", 200),
                                                ("OPTIONS", 204)])
async def test_methods(make_client, method, status):
    client, _ = make_client()
    async with client:
        r = await client.request(method, "/track/ce?project=shop.example")
    assert r.status_code == status
    if method == "OPTIONS":
        assert "POST" in r.headers["access-control-allow-methods"]


async def test_limits(make_client):
    client, publisher = make_client(max_url_bytes=200, max_body_bytes=100)
    async with client:
        long_url = await client.get("/track/ce?project=shop.example&ce_x=" + "a" * 300)
        big_body = await client.post("/track/ce?project=shop.example", content=b"x=" + b"a" * 200)
        declared = await client.post("/track/ce?project=shop.example", content=b"x=1",
                                     headers={"content-length": "100000"})
    assert (long_url.status_code, big_body.status_code) == (414, 413)
    assert declared.status_code == 413
    assert publisher.records == []


async def test_every_answer_has_an_event_id_and_cors(make_client):
    client, _ = make_client()
    async with client:
        for url in ("/track/ce?project=shop.example", "/track/ce?project=nope"):
            r = await client.get(url)
            assert r.headers["x-event-id"] and r.headers["access-control-allow-origin"] == "*"


async def test_over_quota_is_402_and_still_published_flagged(make_client):
    from gateway.app import OVER_QUOTA
    from schemas.quota import QuotaState, month_of

    client, publisher = make_client()
    tracking = client.tracking
    now_month = month_of(int(time.time() * 1000))
    tracking.quotas["shop.example"] = QuotaState("shop.example", now_month, 5, 5)
    async with client:
        over = await client.get("/track/ce?project=shop.example&response=json")
        tracking.quotas["shop.example"] = QuotaState("shop.example", "2000-01", 99, 5)
        new_month = await client.get("/track/ce?project=shop.example&response=json")
    assert over.status_code == OVER_QUOTA and over.json()["success"] is False
    assert new_month.status_code == 200
    assert [r.over_quota for r in publisher.records] == [True, False]
