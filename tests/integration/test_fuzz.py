"""Thousands of malformed requests against a real gateway process on a real broker: bad
methods, lying Content-Length, chunked garbage, broken multipart, nested and huge JSON,
invalid UTF-8 and escapes, huge headers, raw noise. Seeded and bounded in time. Nothing may be
answered with a 5xx but 503, the gateway must stay up, and a good request is still a 200."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote_from_bytes

import httpx
import pytest

from tests.integration.test_cli_and_server import cli, free_port, interrupt, poll_status

pytestmark = pytest.mark.integration

SEED = 20261201
REQUESTS = 2500
BUDGET_S = 120
PROJECT = "fuzz.example"


@pytest.fixture
def fuzz_server(settings):
    env = {"TRACKPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
           "TRACKPIPE_DATA_DIR": str(settings.data_dir), "TRACKPIPE_HTTP_PORT": str(free_port()),
           "TRACKPIPE_BODY_TIMEOUT_MS": "1000", "TRACKPIPE_HEADER_TIMEOUT_MS": "1000",
           "TRACKPIPE_MAX_BODY_BYTES": "65536", "TRACKPIPE_ACK_DEADLINE_MS": "3000"}
    import os

    env = {**os.environ, **env}
    assert cli(env, "projects", "add", PROJECT).returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "trackpipe.cli", "gateway"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{env['TRACKPIPE_HTTP_PORT']}"
    try:
        assert poll_status(f"{url}/track/ce?project={PROJECT}", 200, timeout_s=60) == 200
        yield url, process
    finally:
        interrupt(process, timeout_s=15)


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


def _request(rng: random.Random) -> bytes:
    kind = rng.randrange(12)
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


def _send(port: int, raw: bytes) -> int | None:
    """The status answered, or None when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(raw)  # (no half-close: an HTTP server takes EOF for a client gone)
        except OSError:
            pass
        answer = b""
        try:
            while len(answer) < 64 and (chunk := s.recv(4096)):
                answer += chunk
        except OSError:
            pass
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


def test_malformed_requests_never_get_a_5xx_but_503_and_the_gateway_lives(fuzz_server):
    url, process = fuzz_server
    port = int(url.rsplit(":", 1)[1])
    rng = random.Random(SEED)
    requests = [_request(rng) for _ in range(REQUESTS)]
    started = time.monotonic()

    def send(raw: bytes) -> int | None:
        if time.monotonic() - started > BUDGET_S:
            return -1
        return _send(port, raw)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, requests))
    answered = [s for s in statuses if s is not None and s >= 0]
    assert len([s for s in statuses if s != -1]) >= 1000, "too few were sent in the budget"
    bad = sorted({s for s in answered if s >= 500 and s != 503})
    assert bad == [], f"5xx answers: {bad}"
    assert process.poll() is None, "the gateway died"
    seen = Counter(answered)
    assert seen[200] + seen[202] > 100 and seen[400] > 100, seen  # both kinds were reached
    good = httpx.get(f"{url}/track/ce", params={"project": PROJECT, "event": "after",
                                                "cookie": "good"}, timeout=10)
    assert good.status_code == 200
