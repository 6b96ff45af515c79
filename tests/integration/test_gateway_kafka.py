"""HTTP in, raw records out: the gateway against the real broker (SPEC §1, §2, §6, §7)."""

import base64
import json

import pytest

from schemas.project import ProjectRecord
from tests.conftest import CLIENT_IP, read_raw, register
from tests.waiting import wait_until_async

pytestmark = pytest.mark.integration


async def test_a_pageview_lands_in_kafka_field_by_field(client, settings):
    r = await client.get(
        "/track/ce?project=www.shop.example&event=pv&timestamp=1492030800000&cv_name=Rio"
        "&ce_campaign_name=Teach+Speak+Command&ce_bark_volume=loud&cs_is_post_nap=true"
        "&cookie=c-1&cv_email=Rio%40Dogs.example&utm=%FF&unknown_thing=kept",
        headers={"User-Agent": "UA/1", "Referer": "https://ref.example/",
                 "Accept-Language": "fr-CA"})
    assert r.status_code == 200 and r.content == b";"
    [(key, record)] = await read_raw(settings, 1)
    assert record.id == r.headers["x-event-id"]
    assert (record.endpoint, record.project, record.ip) == ("ce", "shop.example", CLIENT_IP)
    assert (record.user_agent, record.referer, record.language) == (
        "UA/1", "https://ref.example/", "fr-CA")
    assert record.visitor_key == "cookie:c-1" and key == b"shop.example\ncookie:c-1"
    assert abs(record.received_ms - int(record.id.replace("-", "")[:12], 16)) == 0
    assert record.params() == {
        "project": "www.shop.example", "event": "pv", "timestamp": "1492030800000",
        "cv_name": "Rio", "ce_campaign_name": "Teach Speak Command", "ce_bark_volume": "loud",
        "cs_is_post_nap": "true", "cookie": "c-1", "cv_email": "Rio@Dogs.example",
        "utm": "\ufffd", "unknown_thing": "kept"}


@pytest.mark.parametrize("name", ["project", "Project", "host", "domain", "website", "alias"])
async def test_every_project_parameter_name(client, settings, name):
    r = await client.get(f"/track/ce?{name}=SHOP.example&event=e&response=json")
    assert r.json() == {"success": True}
    [(_, record)] = await read_raw(settings, 1)
    assert record.project == "shop.example"


async def test_the_tp_path_beats_every_parameter(client, settings):
    await register(settings, ProjectRecord.build("other.example"))
    await wait_until_async(lambda: client._transport.app.projects.find("other.example"), 10,
                           "the gateway never knew other.example")
    r = await client.get("/track/tp/other.example/identify/?project=shop.example&cv_id=u1")
    assert r.status_code == 200
    [(_, record)] = await read_raw(settings, 1)
    assert (record.project, record.endpoint, record.visitor_key) == (
        "other.example", "identify", "id:u1")


@pytest.mark.parametrize("path", ["/track/ce", "/track/ce/", "/track/identify",
                                  "/track/identify/", "/track/update", "/track/update/",
                                  "/track/ping", "/track/ping/", "/ping", "/ping/"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_every_endpoint_with_and_without_slash(client, settings, path, method):
    url = f"{path}?project=shop.example&cookie=c"
    r = await (client.get(url) if method == "GET" else client.post(url, data={"idptnc": "x"}))
    assert r.status_code == 200
    [(_, record)] = await read_raw(settings, 1)
    assert record.endpoint == path.strip("/").split("/")[-1]


@pytest.mark.parametrize("encoding", ["form", "multipart", "json"])
async def test_every_body_encoding_is_merged_over_the_query(client, settings, encoding):
    fields = {"project": "shop.example", "event": "buy", "ce_amount": "3.5", "cookie": "body"}
    url = "/track/ce?cookie=query&ce_from_query=1"
    if encoding == "form":
        r = await client.post(url, data=fields)
    elif encoding == "multipart":
        r = await client.post(url, files={k: (None, v) for k, v in fields.items()})
    else:
        r = await client.post(url, json={**fields, "ce_amount": 3.5, "ce_paid": True})
    assert r.status_code == 200
    [(_, record)] = await read_raw(settings, 1)
    params = record.params()
    assert params["cookie"] == "body" and params["ce_from_query"] == "1"
    assert record.visitor_key == "cookie:body"
    if encoding == "json":  # JSON types travel as sent
        assert params["ce_amount"] == 3.5 and params["ce_paid"] is True
    else:
        assert params["ce_amount"] == "3.5"


async def test_push_batch_becomes_one_record_per_line(client, settings):
    lines = [
        {"endpoint": "ce", "params": {"event": "a", "cookie": "c1"}},
        {"endpoint": "update", "params": {"idptnc": "p1", "duration": 5, "cookie": "c1"}},
        {"endpoint": "identify", "params": {"cv_email": "x@y.z", "cookie": "c1"}},
        {"endpoint": "ping", "params": {"cookie": "c1"}},
        {"endpoint": "ce", "params": {"event": "b", "project": "unknown.example"}},
    ]
    payload = "\n".join(json.dumps(line) for line in lines) + "\nnot json\n"
    r = await client.post("/track/push?project=shop.example&response=json",
                          data={"payload": payload})
    assert r.status_code == 200
    assert r.json() == {"success": True, "accepted": 4, "rejected": 2}
    found = sorted(await read_raw(settings, 4), key=lambda kr: kr[1].id)
    assert [rec.endpoint for _, rec in found] == ["ce", "update", "identify", "ping"]
    assert [rec.id for _, rec in found] == [f"{r.headers['x-event-id']}.{n}" for n in (1, 2, 3, 4)]
    assert found[1][1].params()["duration"] == 5


@pytest.mark.parametrize(("url", "status"), [
    ("/track/ce?event=pv", 403),
    ("/track/ce?project=unknown.example", 403),
    ("/track/ce?project=../../etc", 403),
    ("/track/tp/..%2F..%2Fetc/ce", 404),  # not a tracking path at all
])
async def test_refused_requests_log_nothing(client, settings, url, status):
    r = await client.get(url + ("&" if "?" in url else "?") + "response=json")
    assert r.status_code == status
    if status == 403:
        assert r.json()["success"] is False
    assert await read_raw(settings, 0) == []


async def test_secure_tracking_and_exclusions(client, settings):
    await register(settings, ProjectRecord.build(
        "guarded.example", secret="s3cret", exclude_ips=("198.51.100.0/24",),
        exclude_user_agents=("HeadlessBot",), exclude_visitors=("qa@shop.example",)))
    await wait_until_async(lambda: client._transport.app.projects.find("guarded.example"), 10,
                           "the gateway never knew guarded.example")
    auth = {"Authorization": "Basic " + base64.b64encode(b"key:s3cret").decode()}
    base = "/track/ce?project=guarded.example&response=json"
    cases = [
        (await client.get(base), 401),
        (await client.get(base, headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401),
        (await client.get(base + "&ip=198.51.100.7", headers=auth), 403),
        (await client.get(base, headers={**auth, "User-Agent": "x HeadlessBot y"}), 403),
        (await client.get(base + "&cv_email=QA@shop.example", headers=auth), 403),
        (await client.get(base + "&cookie=ok", headers=auth), 200),
    ]
    assert [r.status_code for r, _ in cases] == [status for _, status in cases]
    assert cases[0][0].headers["www-authenticate"] == 'Basic realm="trackpipe"'
    [(_, record)] = await read_raw(settings, 1)
    assert record.visitor_key == "cookie:ok"


async def test_operational_endpoints(client, gateway):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "ready": True, "kafka": True, "registry": True}
    await client.get("/track/ce?project=shop.example")
    await client.get("/track/ce?project=nope")
    metrics = (await client.get("/metrics")).text
    assert 'trackpipe_gateway_requests_total{endpoint="ce",status="200"} 1' in metrics
    assert 'trackpipe_gateway_requests_total{endpoint="ce",status="403"} 1' in metrics
    assert "trackpipe_gateway_ack_seconds_count 1" in metrics
    assert (await client.get("/nope")).status_code == 404


async def test_forwarded_for_is_believed_only_from_trusted_proxies(settings_factory):
    import httpx

    from gateway.main import Gateway
    from runtime.topics import create_topics

    settings = settings_factory(trusted_proxies=("10.0.0.0/8",))
    await create_topics(settings, settings.kafka_bootstrap)
    await register(settings, ProjectRecord.build("shop.example"))
    gw = Gateway(settings, settings.kafka_bootstrap)
    async with gw.running():
        await wait_until_async(lambda: all(gw.readiness().values()), 10, "never ready")
        for peer in ("10.1.1.1", "192.0.2.50"):
            transport = httpx.ASGITransport(app=gw, client=(peer, 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                r = await c.get(f"/track/ce?project=shop.example&cookie={peer}",
                                headers={"X-Forwarded-For": "198.51.100.4, 10.2.2.2"})
                assert r.status_code == 200
    found = {rec.visitor_key: rec.ip for _, rec in await read_raw(settings, 2)}
    assert found == {"cookie:10.1.1.1": "198.51.100.4", "cookie:192.0.2.50": "192.0.2.50"}
