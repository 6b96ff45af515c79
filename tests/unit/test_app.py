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
        self.bytes = 0  # of the encoded records

    async def __call__(self, key: bytes, value: bytes) -> int:
        if isinstance(self.status, Exception):
            raise self.status
        self.records.append(RawRecord.from_bytes(value))
        self.bytes += len(value)
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
                          max_url_bytes=limits.pop("max_url_bytes", 65536),
                          max_body_bytes=limits.pop("max_body_bytes", 1024), **limits)

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


async def test_a_record_carries_its_projects_address_settings_as_they_were(make_client):
    client, publisher = make_client()
    tracking = client.tracking
    async with client:
        await client.get("/track/ce?project=shop.example&ip=8.8.8.8&cookie=a")
        for record in (ProjectRecord.build("shop.example", ip_anonymize=True),
                       ProjectRecord.build("shop.example", ip_anonymize=True, location=False),
                       ProjectRecord.build("shop.example")):
            tracking.projects.apply(record.name, record)
            await client.get("/track/ce?project=shop.example&ip=8.8.8.8&cookie=a")
    assert [(r.anonymize_ip, r.locate) for r in publisher.records] == [
        (False, True), (True, True), (True, False), (False, True)]
    assert {r.ip for r in publisher.records} == {"8.8.8.8"}  # the workers look it up first


def request_bytes(r: httpx.Response) -> int:
    """What the gateway counts as a request's own size: its target, headers and body."""
    sent = r.request
    return (len(sent.url.raw_path) + sum(len(k) + len(v) for k, v in sent.headers.raw)
            + len(sent.content))


def push_form(lines: list[str], line_break: str = "\n", **outer: str) -> dict[str, str]:
    return {"payload": line_break.join(lines), **outer}


EVENT = '{"endpoint":"ce","params":{"event":"pv","cookie":"c1","ce_n":1}}'
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) " + "x" * 90,
           "referer": "https://shop.example/cart?utm_source=news&" + "q" * 100,
           "accept-language": "en-GB,en;q=0.9"}


@pytest.mark.parametrize(("line_break", "status", "accepted"), [
    ("\n", 200, 1000), ("\r\n", 200, 1000), ("\r", 400, 0), ("\u2028", 400, 0),
    ("\x85", 400, 0), ("\x1e", 400, 0)],
    ids=["lf", "crlf", "cr", "u2028", "nel", "rs"])
async def test_push_lines_are_separated_by_newline_only(make_client, line_break, status,
                                                       accepted):
    """A payload joined by any other break is one line, not JSON: never 1,000 records (or
    5,000 past the cap, as when the split knew eleven breaks and the cap one)."""
    client, publisher = make_client(max_body_bytes=1 << 20)
    async with client:
        r = await client.post("/track/push?project=shop.example&response=json",
                              data=push_form([EVENT] * 1000, line_break))
    assert r.status_code == status, r.text
    assert len(publisher.records) == accepted


async def test_the_line_cap_counts_the_lines_that_are_split(make_client):
    client, publisher = make_client(max_body_bytes=1 << 20, max_push_lines=3)
    async with client:
        three = await client.post("/track/push?project=shop.example&response=json",
                                  data=push_form([EVENT] * 3 + [""]))  # a final \n ends line 3
        four = await client.post("/track/push?project=shop.example&response=json",
                                 data=push_form([EVENT, "", EVENT, EVENT]))
    assert three.status_code == 200 and three.json()["accepted"] == 3
    assert four.status_code == 413 and "TRACKPIPE_MAX_PUSH_LINES" in four.json()["message"]
    assert "this one has 4" in four.json()["message"] and len(publisher.records) == 3


@pytest.mark.parametrize(("query", "outer"), [
    ("", {"ce_pad": "x" * 200_000}),                # 1,000 lines beside one 200 KB field
    ("&ce_q=" + "q" * 60_000, {}),                  # 1,000 lines, each carrying a 60 KB query
    ("", {f"f{i}": "" for i in range(20_000)}),     # 20,000 empty fields in every line
], ids=["outer-field", "long-query", "many-outer-fields"])
async def test_a_push_whose_records_would_be_over_the_bound_is_413_and_builds_nothing(
        make_client, query, outer):
    client, publisher = make_client(max_body_bytes=1 << 20)
    async with client:
        r = await client.post(f"/track/push?project=shop.example&response=json{query}",
                              data=push_form(["{}"] * 1000, **outer), headers=BROWSER)
    assert r.status_code == 413, r.text
    message = r.json()["message"]
    assert "would make up to" in message and "TRACKPIPE_MAX_PUSH_EXPANSION" in message
    assert publisher.records == []


async def test_a_browser_sized_push_is_accepted_within_the_stated_multiple(make_client):
    """1,000 ordinary lines with a browser's headers: accepted, and its records are under 16
    times the request."""
    client, publisher = make_client(max_body_bytes=1 << 20)
    async with client:
        r = await client.post("/track/push?project=shop.example&response=json",
                              data=push_form([EVENT] * 1000), headers=BROWSER)
    assert r.status_code == 200 and r.json()["accepted"] == 1000
    assert publisher.bytes <= 16 * request_bytes(r)


# Lines whose own text grows most in their records (gateway.expansion.OWN_GROWTH).
GROWING_LINES = {
    "nested-floats": '{"params":{"":[' + ",".join(["1e15"] * 200) + "]}}",
    "float-cookie": '{"params":{"cookie":[1e15,1e15,1e15,1e15,1e15,1e15,1e15,1e15]}}',
    "float-id": '{"params":{"cv_id":1e15}}',
    "top-floats": '{"params":{' + ",".join(f'"{i}":1e5' for i in range(50)) + "}}",
    "email-lowered": '{"params":{"cv_email":"' + "\u0130" * 140 + '"}}',
    "empty": "{}",
}


@pytest.mark.parametrize("line", GROWING_LINES.values(), ids=GROWING_LINES.keys())
@pytest.mark.parametrize("shared", [{}, {"cookie": "\u0130" * 140, "ce_x": "y" * 300}],
                         ids=["nothing-shared", "shared-identifier"])
async def test_the_estimate_is_an_upper_bound_so_no_push_is_refused_after_its_lines_are_built(
        make_client, line, shared):
    """Each push is sent twice: unbounded, to measure its records; then with a bound one byte
    under that. The second must be refused by the estimate (before any line is decoded), not
    by the guard on the encoded total."""
    from gateway.expansion import PushBound

    form = push_form([line] * 50, **shared)
    client, publisher = make_client(max_body_bytes=1 << 20,
                                    push_bound=PushBound(multiple=1000, floor_bytes=0))
    async with client:
        r = await client.post("/track/push?project=shop.example&response=json", data=form,
                              headers=BROWSER)
    assert r.status_code == 200 and r.json()["accepted"] == 50, r.text
    made = publisher.bytes
    client, publisher = make_client(max_body_bytes=1 << 20,
                                    push_bound=PushBound(multiple=0, floor_bytes=made - 1))
    async with client:
        r = await client.post("/track/push?project=shop.example&response=json", data=form,
                              headers=BROWSER)
    assert r.status_code == 413 and "would make up to" in r.json()["message"], r.text
    assert publisher.records == []


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b'{"project":"shop.example","cookie":"\\ud800","cv_id":"a\\udfff",'
                         b'"cv_email":"\\udbff@x","event":"\\ud800","\\udc00":{"k":"\\ud800"}}'),
    ("application/x-www-form-urlencoded",
     b"project=shop.example&payload=" + b'{"params":{"cookie":"\\ud800","\\udc00":"x"}}'),
], ids=["json-body", "push-line"])
async def test_lone_surrogates_are_replaced_at_the_edge_and_the_request_is_logged(
        make_client, content_type, body):
    client, publisher = make_client(max_body_bytes=1 << 20)
    path = "/track/push" if b"payload" in body else "/track/ce"
    async with client:
        r = await client.post(f"{path}?response=json", content=body,
                              headers={"content-type": content_type})
    assert r.status_code == 200, r.text
    [record] = publisher.records
    assert record.visitor_key == "cookie:\ufffd" and "\ufffd" in record.params()
    record.kafka_key()  # a key, a msgpack map and a JSON line can all be made of it
