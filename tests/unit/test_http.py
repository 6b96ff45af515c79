"""The gateway's HTTP protocol (gateway.http) fed bytes as a socket would feed them, with a
transport that records what is written: header bytes and count over their limits are 431 and
closed before any application sees them, in whatever pieces they arrive, and the parser never
holds more than the limit. A real gateway process under such a request is in
tests/integration/test_head_limits.py."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.http import GatewayProtocol, HeadLimits
from tests.waiting import wait_until_async

LIMITS = HeadLimits(max_url_bytes=65_535, header_timeout_s=10, max_header_bytes=4096,
                    max_header_count=20)


class CountingParser:
    """The protocol's parser, counting the bytes it is fed (all it can hold)."""

    def __init__(self, parser: object) -> None:
        self.parser = parser
        self.fed = 0

    def feed_data(self, data: bytes) -> None:
        self.fed += len(data)
        self.parser.feed_data(data)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.parser, name)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8080)}.get(name,
                                                                                      default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture
def connect():
    """A protocol on a fake transport; the application answers 200 with how many header
    fields (trailers included) it saw and records each request's scope."""
    seen: list[dict] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append(scope)
        while (await receive()).get("more_body"):
            pass
        body = str(len(scope["headers"])).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def make(**limits: int) -> tuple[GatewayProtocol, Transport]:
        config = Config(app=app, log_config=None, lifespan="off")
        config.load()
        protocol = GatewayProtocol(config=config, server_state=ServerState(), app_state={},
                                   limits=dataclasses.replace(LIMITS, **limits))
        protocol.parser = CountingParser(protocol.parser)  # type: ignore[assignment]
        transport = Transport()
        protocol.connection_made(transport)
        protocol.seen = seen  # type: ignore[attr-defined]
        return protocol, transport

    return make


def request(headers: list[bytes], body: bytes = b"") -> bytes:
    head = b"POST /track/ce?project=x HTTP/1.1\r\nHost: x\r\n" + b"".join(
        h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def feed(protocol: GatewayProtocol, data: bytes, piece: int) -> int:
    """Feed ``data`` in pieces of ``piece`` bytes until the connection closes; bytes fed."""
    fed = 0
    while fed < len(data) and not protocol.transport.is_closing():
        protocol.data_received(data[fed:fed + piece])
        fed += piece
    return fed


def status(transport: Transport) -> int:
    return int(transport.written.split(b" ", 2)[1])


@pytest.mark.parametrize("piece", [1, 700, 65536], ids=["byte-by-byte", "small", "whole"])
async def test_headers_within_the_limits_reach_the_application(connect, piece):
    protocol, transport = connect()
    headers = [b"X-H%d: " % i + b"v" * 150 for i in range(17)]  # 19 fields, about 2.8 KB
    feed(protocol, request(headers, b"a=b"), piece)
    await wait_until_async(lambda: transport.written.endswith(b"19"), 10, "not written")
    assert status(transport) == 200 and not transport.closed


@pytest.mark.parametrize("piece", [1, 700, 65536], ids=["byte-by-byte", "small", "whole"])
@pytest.mark.parametrize(("headers", "reason"), [
    ([b"X-Big: " + b"v" * 5000], b"over 4096 bytes (TRACKPIPE_MAX_HEADER_BYTES)"),
    ([b"X-H%d: " % i + b"v" * 500 for i in range(10)], b"over 4096 bytes"),
    ([b"X-H%d: v" % i for i in range(19)], b"over 20 header fields (TRACKPIPE_MAX_HEADER_COUNT)"),
], ids=["one-long-value", "many-long-values", "too-many-fields"])
async def test_headers_over_a_limit_are_431_with_the_reason_and_closed(connect, headers, reason,
                                                                        piece):
    protocol, transport = connect()
    feed(protocol, request(headers, b"a=b"), piece)
    assert transport.closed and status(transport) == 431
    assert reason in transport.written and b"connection: close" in transport.written
    assert protocol.seen == []  # type: ignore[attr-defined]


async def test_a_gigabyte_of_headers_is_refused_after_the_limit_not_held(connect):
    """The parser is fed at most what is left of the limit: the connection is closed once a
    little more than 4 KiB of headers has arrived, whatever is still coming."""
    protocol, transport = connect()
    endless = b"GET /track/ce HTTP/1.1\r\n" + b"X-Pad: " + b"v" * (1 << 20)
    fed = feed(protocol, endless, 256 * 1024)
    assert status(transport) == 431 and fed == 256 * 1024  # the first read, and no more
    assert protocol.parser.fed <= 4096 + len(b"/track/ce") + 1


async def test_a_long_target_is_not_header_bytes(connect):
    """The target has its own limit (414, in the application): 60 KB of it next to a few
    headers is within a 4 KiB header limit."""
    protocol, transport = connect()
    data = b"GET /track/ce?a=" + b"b" * 60_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    feed(protocol, data, 16 * 1024)
    await wait_until_async(lambda: transport.written.endswith(b"1"), 10, "not written")
    assert status(transport) == 200


async def test_keep_alive_counts_each_request_on_its_own(connect):
    protocol, transport = connect()
    headers = [b"X-H%d: " % i + b"v" * 150 for i in range(15)]  # 17 fields, 2.5 KB each time
    for n in range(1, 4):
        feed(protocol, request(headers), 65536)
        await wait_until_async(lambda n=n: transport.written.count(b"HTTP/1.1 200") == n, 10,
                               f"{n} answers not written")
    assert not transport.closed


def chunked(trailers: list[bytes]) -> bytes:
    return (b"POST /track/ce HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n")


async def test_trailers_count_as_headers_and_over_the_limit_close_the_connection(connect):
    protocol, transport = connect()
    feed(protocol, chunked([b"X-T: 1"]), 65536)
    await wait_until_async(lambda: b"HTTP/1.1 200" in transport.written, 10, "no answer")

    protocol, transport = connect()
    fed = feed(protocol, chunked([b"X-T: " + b"v" * (1 << 20)]), 64 * 1024)
    assert transport.closed and fed < 200 * 1024
    # the first read after the last chunk is not counted (at most one read), then the limit
    assert protocol.parser.fed <= 64 * 1024 + 4096 + 1

    protocol, transport = connect()
    feed(protocol, chunked([b"X-T%d: 1" % i for i in range(40)]), 65536)
    assert transport.closed
