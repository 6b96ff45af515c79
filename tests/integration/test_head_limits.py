"""Header bytes and count over a real socket, against `trackpipe gateway` alone (no nginx in
front): a request that keeps sending 8 KB headers is answered 431 and cut off after the limit,
the process does not grow with what was offered, and other clients are answered meanwhile."""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.pipeline import gateway_alone

pytestmark = pytest.mark.integration

PROJECT = "heads.example"
OFFERED_BYTES = 1 << 30  # what the sender would send if it were never stopped
HEADER = b"X-Pad: " + b"v" * 8192 + b"\r\n"


@pytest.fixture
def gateway_process(settings):
    with gateway_alone(settings, PROJECT) as gateway:
        yield gateway


def rss_bytes(pid: int) -> int:
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send_headers_until_stopped(port: int, head: bytes, more: bytes, offered: int
                               ) -> tuple[int, bytes]:
    """Send ``head``, then ``more`` again and again (up to ``offered`` bytes) until the server
    answers or closes; (bytes sent, what was answered)."""
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        batch = more * max(1, (256 * 1024) // len(more))
        try:
            while sent < offered:
                if select.select([s], [], [], 0)[0]:
                    break  # an answer (or the close) has arrived
                s.sendall(batch)
                sent += len(batch)
        except OSError:
            pass  # closed under us: what it answered first is still to be read
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return sent, answer


def test_a_gigabyte_of_headers_is_431_after_the_limit_and_others_are_answered_meanwhile(
        gateway_process):
    url, process = gateway_process
    port = int(url.rsplit(":", 1)[1])
    before = rss_bytes(process.pid)
    result: list[tuple[int, bytes]] = []
    sender = threading.Thread(target=lambda: result.append(send_headers_until_stopped(
        port, f"GET /track/ce?project={PROJECT} HTTP/1.1\r\nHost: x\r\n".encode(), HEADER,
        OFFERED_BYTES)))
    sender.start()
    answered = 0
    with httpx.Client(timeout=5) as client:
        while sender.is_alive() or answered < 20:
            r = client.get(f"{url}/track/ce", params={"project": PROJECT, "cookie": "other"})
            assert r.status_code == 200
            answered += 1
    sender.join(timeout=60)
    [(sent, answer)] = result
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"over 65536 bytes (TRACKPIPE_MAX_HEADER_BYTES)" in answer
    assert sent < 64 * 1024 * 1024, f"{sent} bytes were taken before the gateway stopped"
    assert rss_bytes(process.pid) - before < 64 * 1024 * 1024
    assert process.poll() is None


def test_too_many_header_fields_are_431_with_the_reason(gateway_process):
    url, _ = gateway_process
    port = int(url.rsplit(":", 1)[1])
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(101))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /track/ce?project={PROJECT} HTTP/1.1\r\nHost: x\r\n".encode()
                  + fields + b"\r\n")
        answer = b""
        deadline = time.monotonic() + 10
        while (chunk := s.recv(65536)) and time.monotonic() < deadline:
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"over 100 header fields (TRACKPIPE_MAX_HEADER_COUNT)" in answer
    within = httpx.get(f"{url}/track/ce", params={"project": PROJECT},
                       headers={f"X-F{i}": "1" for i in range(90)})
    assert within.status_code == 200
