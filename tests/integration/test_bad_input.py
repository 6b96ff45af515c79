"""Malformed input gets a clear 4xx or is accepted; never a 5xx, never a crash, and the
gateway goes on serving good requests afterwards with nothing lost."""

import pytest

from tests.conftest import read_raw

pytestmark = pytest.mark.integration

GOOD = "/track/ce?project=shop.example&event=after&cookie=good"


async def assert_still_serving(client, settings, expected_records):
    r = await client.get(GOOD)
    assert r.status_code == 200
    records = [rec for _, rec in await read_raw(settings, expected_records)]
    assert len(records) == expected_records
    assert [rec.params().get("event") for rec in records].count("after") == 1


@pytest.mark.parametrize("query", [
    "%%%&&&===;;;", "project=shop.example&%ZZ=%G1&=&&a=%", "project=shop.example&x=%C3%28%FF",
    "project=shop.example&\u00e9\u00e8=\u2603",
], ids=["garbage", "broken-escapes", "invalid-utf8", "raw-non-ascii"])
async def test_garbage_query_strings(client, settings, query):
    r = await client.get("/track/ce?" + query)
    assert r.status_code in (200, 403)
    accepted = int(r.status_code == 200)
    await assert_still_serving(client, settings, accepted + 1)


async def test_invalid_utf8_bytes_are_replaced_not_fatal(client, settings):
    r = await client.post("/track/ce?project=shop.example", content=b"cv_name=\xff\xfe&event=x",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    [(_, record)] = await read_raw(settings, 1)
    assert record.params()["cv_name"] == "\ufffd\ufffd"


async def test_a_10_mb_body_is_413(client, settings):
    r = await client.post("/track/ce?project=shop.example&response=json",
                          content=b"a=" + b"x" * 10_000_000)
    assert r.status_code == 413 and r.json()["success"] is False
    await assert_still_serving(client, settings, 1)


async def test_10000_parameters_are_accepted(client, settings):
    body = "&".join(f"ce_p{i}={i}" for i in range(10_000))
    r = await client.post("/track/ce?project=shop.example", content=body.encode(),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    [(_, record)] = await read_raw(settings, 1)
    assert len(record.params()) == 10_001


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b"[1, 2, 3]"),
    ("application/json", b'{"project": "shop.example", '),
    ("multipart/form-data; boundary=zz", b"--zz\r\nbroken"),
], ids=["json-array", "truncated-json", "broken-multipart"])
async def test_unparseable_bodies_are_400(client, settings, content_type, body):
    r = await client.post("/track/ce?project=shop.example&response=json", content=body,
                          headers={"content-type": content_type})
    assert r.status_code == 400 and r.json()["message"]
    await assert_still_serving(client, settings, 1)


@pytest.mark.parametrize("project", ["../../etc", "/etc/passwd", "shop.example/../x", "%00",
                                     "a" * 5000])
async def test_path_like_project_names_are_403(client, settings, project):
    r = await client.get("/track/ce", params={"project": project})
    assert r.status_code == 403
    await assert_still_serving(client, settings, 1)


async def test_push_with_no_valid_line_is_400(client, settings):
    r = await client.post("/track/push?project=shop.example", data={"payload": "nope\n[]"})
    assert r.status_code == 400
    r = await client.post("/track/push?project=shop.example", data={})
    assert r.status_code == 400
    await assert_still_serving(client, settings, 1)


async def test_a_big_body_is_parsed_off_the_event_loop(client, settings, monkeypatch):
    """While a 600 KB form of empty fields is being parsed, other requests are answered: the
    parse runs in a thread (on the loop it took most of a second, stalling everyone)."""
    import asyncio
    import threading

    import gateway.params as params

    parsing, release = threading.Event(), threading.Event()
    real = params.decode_form

    def slow(body):
        if len(body) > 100_000:
            parsing.set()
            release.wait(10)
        return real(body)

    monkeypatch.setattr(params, "decode_form", slow)
    big = asyncio.create_task(client.post(
        "/track/ce?project=shop.example", content=b"a&" * 300_000,
        headers={"content-type": "application/x-www-form-urlencoded"}))
    assert await asyncio.to_thread(parsing.wait, 10)
    small = await client.get(GOOD)
    still_parsing = not big.done()
    release.set()
    assert small.status_code == 200 and still_parsing
    assert (await big).status_code == 200


@pytest.mark.parametrize(("body", "status"), [
    (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    (b'{"project": "shop.example", "ce_n": 123456789012345678901234567890}', 200),
], ids=["nested-too-deep", "integer-beyond-64-bits"])
async def test_json_shapes_the_record_cannot_carry_are_4xx_or_kept_as_text(client, settings,
                                                                            body, status):
    r = await client.post("/track/ce?project=shop.example&response=json", content=body,
                          headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    if status == 200:
        [(_, record)] = await read_raw(settings, 1)
        assert record.params()["ce_n"] == "123456789012345678901234567890"
    else:
        await assert_still_serving(client, settings, 1)


async def test_a_push_over_the_line_cap_is_413_and_publishes_nothing(client, settings):
    payload = "\n".join('{"endpoint": "ce", "params": {"event": "x"}}' for _ in range(1001))
    r = await client.post("/track/push?project=shop.example&response=json",
                          data={"payload": payload})
    assert r.status_code == 413 and "TRACKPIPE_MAX_PUSH_LINES" in r.json()["message"]
    await assert_still_serving(client, settings, 1)


async def test_a_record_kafka_could_not_take_is_413_before_it_is_acknowledged(settings_factory):
    """With a body limit raised past what a raw record may be (MAX_RECORD_BYTES), a request
    that would make a bigger record is refused: never a 202 whose record Kafka then refuses
    for ever at the head of the spool."""
    import httpx

    from gateway.main import Gateway
    from runtime.topics import create_topics
    from schemas.project import ProjectRecord
    from tests.conftest import CLIENT_IP, register
    from tests.waiting import wait_until_async

    settings = settings_factory(max_body_bytes=5 * 1024 * 1024)
    await create_topics(settings, settings.kafka_bootstrap)
    gw = Gateway(settings, settings.kafka_bootstrap)
    async with gw.running():
        await register(settings, ProjectRecord.build("shop.example"))
        await wait_until_async(lambda: gw.projects.find("shop.example") is not None
                               and gw.readiness()["kafka"], 10,
                               "the gateway never knew shop.example or never reached Kafka")
        transport = httpx.ASGITransport(app=gw, client=(CLIENT_IP, 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            r = await c.post("/track/ce?project=shop.example&response=json",
                             content=b"ce_blob=" + b"x" * (3 * 1024 * 1024),
                             headers={"content-type": "application/x-www-form-urlencoded"})
            assert r.status_code == 413 and "most Kafka takes" in r.json()["message"]
            assert gw.publisher.spool.depth == 0
            assert (await c.get(GOOD)).status_code == 200
    records = [rec for _, rec in await read_raw(settings, 1)]
    assert [rec.params().get("event") for rec in records] == ["after"]
