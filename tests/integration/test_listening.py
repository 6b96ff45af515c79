"""What each listening role binds with the default settings, read from the process's own sockets.

The defaults promise loopback only (no token is asked for there): the gateway, a worker's web
server (its lookups answer people's emails and ids), the dashboard and the triggers service's
metrics. A setting can say one address while a framework binds another (faust binds
``web_bind``, not ``web_host``), so the addresses are read where the kernel keeps them:
``/proc/<pid>/net/tcp{,6}`` for the sockets whose inodes the process (or a child of it) holds
open.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.pipeline import free_port, interrupt
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

LISTEN = "0A"  # the kernel's TCP_LISTEN state in /proc/net/tcp


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a server may listen from a child it spawned)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(c) for c in (task / "children").read_text().split()]
            except OSError:  # the task ended meanwhile
                pass
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def decode_address(hex_address: str) -> str:
    """``0100007F`` or a tcp6 address of 32 hex digits: each 32-bit word in host byte order."""
    words = [bytes.fromhex(hex_address[i:i + 8])[::-1] for i in range(0, len(hex_address), 8)]
    return str(ipaddress.ip_address(b"".join(words)))


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) of every TCP socket ``pid`` and its children listen on."""
    found = set()
    for process in descendants(pid):
        inodes = socket_inodes(process)
        for table in ("tcp", "tcp6"):
            lines = Path(f"/proc/{process}/net/{table}").read_text().splitlines()[1:]
            for fields in (line.split() for line in lines):
                local, state, inode = fields[1], fields[3], fields[9]
                if state == LISTEN and inode in inodes:
                    address, port = local.split(":")
                    found.add((decode_address(address), int(port, 16)))
    return found


def default_env(settings, **ports: int) -> dict[str, str]:
    """The environment of a user who set only where Kafka, the data and free ports are: no
    ``TRACKPIPE_*`` of the machine running the suite leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKPIPE_")}
    return {**env, "TRACKPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
            "TRACKPIPE_DATA_DIR": str(settings.data_dir),
            "TRACKPIPE_RAW_PARTITIONS": str(settings.raw_partitions),
            **{f"TRACKPIPE_{name.upper()}": str(port) for name, port in ports.items()}}


ROLES = {  # role: (its port setting, its command)
    "gateway": ("http_port", ["gateway"]),
    "worker": ("worker_web_port", ["worker", "--loglevel", "info"]),
    "dashboard": ("admin_port", ["dashboard"]),
    "triggers": ("triggers_web_port", ["triggers", "run"]),  # its /metrics
}


@pytest.mark.parametrize("role", list(ROLES))
def test_every_listening_socket_of_a_role_with_the_default_settings_is_on_loopback(
        role, settings, tmp_path):
    setting, command = ROLES[role]
    port = free_port()
    log = tmp_path / f"{role}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "trackpipe.cli", *command],
                                   env=default_env(settings, **{setting: port}),
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        def started() -> bool:
            """The role's own port answers (it has started its server); a worker has also
            started every other service of its own, not only the web."""
            assert process.poll() is None, log.read_text()[-3000:]
            return answers(port) and (role != "worker"
                                      or b"[^Worker]: Ready" in log.read_bytes())

        wait_until(started, 120, lambda _: f"{role} never started: {log.read_text()[-3000:]}",
                   every_s=0.2)
        sockets = listening(process.pid)
    finally:
        interrupt(process, timeout_s=30)
    assert port in {p for _, p in sockets}, f"{role}'s port is not among {sockets}"
    assert {address for address, _ in sockets} == {"127.0.0.1"}, f"{role} listens on {sockets}"


def answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    except httpx.TransportError:
        return False
    return True
