"""Thousands of malformed requests against a real gateway process on a real broker: bad
methods, lying Content-Length, chunked garbage, broken multipart, nested and huge JSON,
invalid UTF-8 and escapes, huge headers, raw noise, pushes that would expand (many lines
beside a long outer field or query; lines joined by every Unicode line break), and lone
surrogates in every field and body type. Seeded and bounded in time. Nothing may be answered
with a 5xx but 503, the gateway must stay up, a good request is still a 200, and no request
makes more than the stated multiple of its own size in raw records."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote_from_bytes

import httpx
import pytest

from schemas import envelope, topics
from schemas.raw import RawRecord
from tests.conftest import records
from tests.integration.pipeline import gateway_alone, metric
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SEED = 20261201
REQUESTS = 2500
BUDGET_S = 120
PROJECT = "fuzz.example"
# The stated bound (TRACKPIPE_MAX_PUSH_EXPANSION, TRACKPIPE_PUSH_EXPANSION_FLOOR_BYTES; the
# defaults): no request makes more raw records than this multiple of its own bytes, or the floor.
EXPANSION = 16
FLOOR_BYTES = 256 * 1024
# Every line break str.splitlines() knows; only the first ends a push line.
LINE_BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
               "\u2029"]
LONE = ["\\ud800", "\\udfff", "\\udbff\\u0041", "\\udc00\\ud800"]  # as JSON escapes


@pytest.fixture
def fuzz_server(settings):
    with gateway_alone(settings, PROJECT, TRACKPIPE_BODY_TIMEOUT_MS="1000",
                       TRACKPIPE_HEADER_TIMEOUT_MS="1000",
                       TRACKPIPE_MAX_BODY_BYTES="65536") as gateway:
        yield gateway


def _query(rng: random.Random) -> bytes:
    parts = [b"project=" + PROJECT.encode()]
    for _ in range(rng.randrange(0, 12)):
        parts.append(rng.choice([
            b"a=%", b"%zz=1", b"x=%C3%28", b"\xff\xfe=\xc3", b"ce_url=%25%00%0a", b"=",
            b"&&&", b"cookie=" + bytes(rng.randrange(32, 127) for _ in range(8)),
            b"cv_id=" + b"9" * rng.randrange(1, 60), b"timestamp=1e999", b"timeout=-1",
            b"response=" + rng.choice([b"json", b"xml", b"js", b"\xff"]),
            b"event=" + bytes(rng.randrange(0, 256) for _ in range(rng.randrange(0, 20)))]))
    query = b"&".join(parts)
    if rng.random() < 0.1:  # raw bytes no client should send in a URL
        return query.replace(b" ", b"+").replace(b"\r", b"").replace(b"\n", b"")
    return quote_from_bytes(query, safe="=&%+").encode()  # odd, but as a client encodes it


def _json_body(rng: random.Random) -> bytes:
    shape = rng.randrange(6)
    if shape == 0:
        depth = rng.choice([10, 1000, 100_000])
        return b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    if shape == 1:
        return json.dumps({"project": PROJECT, "n": 10 ** rng.randrange(10, 400)}).encode()
    if shape == 2:
        return b'{"project": "' + PROJECT.encode() + b'", "x": "\xff\xfe\xed"}'
    if shape == 3:
        return b"[" + b"1," * rng.randrange(1, 10_000) + b"1]"
    if shape == 4:
        return json.dumps({"project": PROJECT, "ce_list": list(range(100)),
                           "ce_obj": {"a": {"b": None}}}).encode()
    return bytes(rng.randrange(0, 256) for _ in range(rng.randrange(1, 200)))


def _post(target: bytes, content_type: bytes, body: bytes, head: bytes = b"") -> bytes:
    return (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head +
            b"Content-Type: " + content_type + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)


FORM = b"application/x-www-form-urlencoded"


def _expanding_push(rng: random.Random) -> bytes:
    """A push whose lines would each carry something long: an outer form field, the query, or
    a browser's headers; its lines joined by any line break."""
    # (half with "\n": any other break makes one line that is not JSON, refused as such)
    line_break = (b"\n" if rng.random() < 0.5 else rng.choice(LINE_BREAKS).encode())
    lines = line_break.join([b"{}"] * rng.choice([10, 500, 1000, 3000]))
    shape = rng.randrange(3)
    query = b"project=" + PROJECT.encode()
    outer = b""
    if shape == 0:  # one long outer field, copied into every line
        outer = b"&ce_pad=" + b"x" * rng.choice([1000, 20_000, 40_000])
    elif shape == 1:  # a long query, carried by every line
        query += b"&ce_q=" + b"q" * rng.choice([1000, 20_000, 60_000])
    head = b"User-Agent: " + b"u" * rng.choice([100, 4000]) + b"\r\n"
    payload = lines if rng.random() < 0.5 else quote_from_bytes(lines).encode()
    return _post(b"/track/push?" + query, FORM, b"payload=" + payload + outer, head)


def _line_break_push(rng: random.Random) -> bytes:
    """Good lines joined by one of every Unicode line break, sent form-encoded or as raw UTF-8
    in a form, or inside a JSON body."""
    line_break = rng.choice(LINE_BREAKS)
    line = json.dumps({"endpoint": "ce", "params": {"event": "b", "cookie": "lb"}})
    payload = line_break.join([line] * rng.choice([2, 50, 1001, 5000]))
    target = b"/track/push?project=" + PROJECT.encode()
    how = rng.randrange(3)
    if how == 0:
        return _post(target, FORM, b"payload=" + quote_from_bytes(payload.encode()).encode())
    if how == 1:
        return _post(target, FORM, b"payload=" + payload.encode())
    return _post(target, b"application/json", json.dumps({"payload": payload}).encode())


def _lone_surrogates(rng: random.Random) -> bytes:
    """A lone surrogate in an identifier, a name, a value or a nested value, in every body
    type, the query, the path and the headers."""
    lone = rng.choice(LONE)
    field = rng.choice(["cookie", "cv_id", "id", "cv_email", "email", "event", "cv_name",
                        "ce_x", "project", lone])
    target = b"/track/ce?project=" + PROJECT.encode()
    how = rng.randrange(7)
    if how == 0:  # JSON body: in a value, a name and a nested value
        body = ('{"project":"' + PROJECT + '","' + field + '":"a' + lone + '","ce_n":{"k":["'
                + lone + '"]},"cookie":"' + rng.choice(["c", lone]) + '"}').encode()
        return _post(target, b"application/json", body)
    if how == 1:  # a push line: form-encoded, or in a JSON body (escaped in the line, or not)
        line = ('{"params":{"' + field + '":"' + lone + '","cookie":"' + lone + '","ce_o":{"'
                + lone + '":1}}}')
        if rng.random() < 0.5:
            body = b"payload=" + quote_from_bytes(f"{line}\n{line}".encode()).encode()
            return _post(b"/track/push?project=" + PROJECT.encode(), FORM, body)
        payload = json.dumps(line).encode()
        if rng.random() < 0.5:  # the surrogate in the body's own string, not in the line's
            payload = payload.replace(b"\\\\u", b"\\u")
        body = b'{"project":"' + PROJECT.encode() + b'","payload":' + payload + b"}"
        return _post(b"/track/push", b"application/json", body)
    if how == 2:  # multipart whose charset can encode a surrogate: UTF-7 or escapes
        charset, text = rng.choice([(b"utf-7", b"+2AA-"), (b"unicode_escape", b"\\ud800"),
                                    (b"raw_unicode_escape", b"\\udfff")])
        body = (b'--zz\r\nContent-Disposition: form-data; name="cookie' + text + b'"\r\n\r\n'
                + text + b'\r\n--zz\r\nContent-Disposition: form-data; name="cv_id"; '
                b'filename="f' + text + b'"\r\n\r\nx\r\n--zz--\r\n')
        return _post(target, b"multipart/form-data; boundary=zz; charset=" + charset, body)
    if how == 3:  # a form: surrogates as CESU-8 escapes and as raw bytes
        body = b"cookie=%ED%A0%80&cv_id=\xed\xa0\x80&\xed\xb0\x80=1"
        return _post(target, FORM, body)
    if how == 4:  # the query
        return (b"GET " + target + b"&cookie=%ED%A0%80&cv_email=\xed\xa0\x80&%ED%B0%80=1"
                b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    if how == 5:  # the path's project
        return (b"GET /track/tp/%ED%A0%80/ce?cookie=c HTTP/1.1\r\nHost: x\r\n"
                b"Connection: close\r\n\r\n")
    name = rng.choice([b"User-Agent", b"Referer", b"Accept-Language", b"Authorization",
                       b"X-Forwarded-For", b"Content-Type"])  # the headers
    return (b"GET " + target + b"&cookie=h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + name + b": \xed\xa0\x80\r\n\r\n")


def _request(rng: random.Random) -> bytes:
    kind = rng.randrange(16)
    if kind == 12:
        return _expanding_push(rng)
    if kind == 13:
        return _line_break_push(rng)
    if kind in (14, 15):
        return _lone_surrogates(rng)
    path = rng.choice([b"/track/ce", b"/track/push", b"/track/identify", b"/ping",
                       b"/track/tp/" + PROJECT.encode() + b"/ce", b"/track/update/"])
    target = path + b"?" + _query(rng)
    head = b"Host: x\r\nConnection: close\r\n"
    if kind == 0:  # a method nobody supports
        method = rng.choice([b"PUT", b"DELETE", b"PATCH", b"TRACE", b"G@T", b"X" * 300])
        return method + b" " + target + b" HTTP/1.1\r\n" + head + b"\r\n"
    if kind == 1:  # a Content-Length that lies (more promised than sent, or less)
        body = b"a=b&c=d"
        declared = len(body) + rng.choice([-5, 3, 1000])
        return (b"POST " + target + b" HTTP/1.1\r\n" + head +
                b"Content-Length: %d\r\n\r\n" % max(declared, 0) + body)
    if kind == 2:  # chunked garbage
        chunks = rng.choice([b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nab\r\n0\r\n\r\n",
                             b"ffffffffffffffff\r\nx\r\n", b"3\r\nabc\r\n"])
        return (b"POST " + target + b" HTTP/1.1\r\n" + head +
                b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    if kind == 3:  # broken multipart
        body = rng.choice([b"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb",
                           b"--zz--", b"--other\r\n\r\n--other--", b"\x00" * 50])
        ctype = rng.choice([b"multipart/form-data; boundary=zz", b"multipart/form-data",
                            b"multipart/form-data; boundary="])
        return (b"POST " + target + b" HTTP/1.1\r\n" + head + b"Content-Type: " + ctype +
                b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    if kind in (4, 5):  # JSON of every odd shape
        body = _json_body(rng)
        return (b"POST " + target + b" HTTP/1.1\r\n" + head +
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body)
    if kind == 6:  # a form of invalid UTF-8, broken escapes, many empty fields
        body = rng.choice([b"a&" * rng.randrange(1, 20_000), b"cv_name=%FF%FE&x=%E2%82",
                           b"payload=" + b"{}\n" * rng.randrange(1, 3000)])
        return (b"POST " + target + b" HTTP/1.1\r\n" + head +
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)
    if kind == 7:  # huge or strange headers
        value = rng.choice([b"x" * 100_000, b"\xff\xfe", b"a" * 8000])
        name = rng.choice([b"User-Agent", b"X-Forwarded-For", b"Authorization", b"Cookie"])
        return b"GET " + target + b" HTTP/1.1\r\n" + head + name + b": " + value + b"\r\n\r\n"
    if kind == 8:  # noise
        return bytes(rng.randrange(0, 256) for _ in range(rng.randrange(1, 500)))
    if kind == 9:  # a push of odd lines
        lines = [b"not json", b"{}", b'{"endpoint":"x"}', b'{"params":[]}',
                 b'{"endpoint":"ce","params":{"project":"' + PROJECT.encode() + b'"}}']
        body = b"payload=" + b"%0A".join(rng.choice(lines) for _ in range(rng.randrange(1, 50)))
        return (b"POST /track/push?project=" + PROJECT.encode() + b" HTTP/1.1\r\n" + head +
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)
    if kind == 10:  # a bad HTTP version or request line
        return rng.choice([b"GET " + target + b" HTTP/9.9\r\n\r\n", b"GET\r\n\r\n",
                           b"GET " + target + b"\r\n\r\n", b" / HTTP/1.1\r\n\r\n"])
    return b"GET " + target + b" HTTP/1.1\r\n" + head + b"\r\n"  # a plain odd query


def _send(port: int, raw: bytes) -> tuple[int, str] | None:
    """The status and event id answered, or None when the server closed without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(raw)  # (no half-close: an HTTP server takes EOF for a client gone)
        except OSError:
            pass
        answer = b""
        try:
            while b"\r\n\r\n" not in answer and len(answer) < 8192 and (
                    chunk := s.recv(4096)):
                answer += chunk
        except OSError:
            pass
    if not answer.startswith(b"HTTP/1."):
        return None
    head = answer.partition(b"\r\n\r\n")[0].lower()
    event_id = head.partition(b"x-event-id: ")[2].partition(b"\r\n")[0].decode()
    return int(answer.split(b" ", 2)[1]), event_id


def _records_bytes(settings) -> dict[str, int]:
    """Bytes of raw records per request in the raw topic now (a push line's id is
    ``<event id>.<n>``)."""
    made: dict[str, int] = {}
    for message in asyncio.run(records(settings, topics.RAW,
                                       max_partition_fetch_bytes=8 * 1024 * 1024)):
        for item in envelope.unpack(message.value):
            record = RawRecord.from_obj(item)
            request = record.id.partition(".")[0]
            made[request] = made.get(request, 0) + len(record.to_bytes())
    return made


def test_malformed_requests_never_get_a_5xx_but_503_and_the_gateway_lives(fuzz_server,
                                                                         settings):
    url, process = fuzz_server
    port = int(url.rsplit(":", 1)[1])
    rng = random.Random(SEED)
    requests = [_request(rng) for _ in range(REQUESTS)]
    started = time.monotonic()

    def send(raw: bytes) -> tuple[int, str] | None:
        if time.monotonic() - started > BUDGET_S:
            return -1, ""
        return _send(port, raw)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, requests))
    answered = [a for a in answers if a is not None and a[0] >= 0]
    assert len([a for a in answers if a is None or a[0] != -1]) >= 1000, \
        "too few were sent in the budget"
    bad = sorted({status for status, _ in answered if status >= 500 and status != 503})
    assert bad == [], f"5xx answers: {bad}"
    assert process.poll() is None, "the gateway died"
    seen = Counter(status for status, _ in answered)
    assert seen[200] + seen[202] > 100 and seen[400] > 100, seen  # both kinds were reached
    assert seen[413] > 10 and seen[431] > 10, seen  # pushes and headers over their bounds
    good = httpx.get(f"{url}/track/ce", params={"project": PROJECT, "event": "after",
                                                "cookie": "good"}, timeout=10)
    assert good.status_code == 200

    size = {answer[1]: len(raw) for raw, answer in zip(requests, answers, strict=True)
            if answer is not None and answer[0] in (200, 202, 402)}
    # every record a request made is in Kafka once its answer came (200), or once the spool
    # it went to (202) is drained: then the topic, read to its end, holds all of them
    wait_until(lambda: _records_bytes(settings), 60,
               lambda made: f"{len(size.keys() - made.keys())} never arrived",
               until=lambda made: size.keys() <= made.keys(), every_s=0.5)
    wait_until(lambda: metric(url, "trackpipe_gateway_spool_depth"), 60,
               "the gateway's spool was never drained", until=lambda depth: depth == 0)
    made = _records_bytes(settings)
    over = {event_id: (made[event_id], raw_size) for event_id, raw_size in size.items()
            if made[event_id] > max(EXPANSION * raw_size, FLOOR_BYTES)}
    assert over == {}, f"requests that made more than {EXPANSION} times their size: {over}"
