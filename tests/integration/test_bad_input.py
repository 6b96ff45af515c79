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
