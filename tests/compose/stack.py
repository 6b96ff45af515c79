"""docker-compose.yml run as a user runs it, for the compose test: one compose project of its
own, its ports published on free loopback ports chosen here, its containers found, killed and
started by id, its files copied out, and all of it (volumes too) removed at the end.

Everything the test reaches is a port published on 127.0.0.1: nginx (the traffic), the three
brokers' external listeners (reading topics, the replay) and Prometheus.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from tests.integration.pipeline import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).parents[2]
BROKERS = ("kafka-1", "kafka-2", "kafka-3")


class Stack:
    """One compose project of docker-compose.yml; ``env`` is what its variables read."""

    def __init__(self, name: str, log: Path, overrides: tuple[Path, ...] = ()) -> None:
        self.name = name
        self.log = log
        self.files = (ROOT / "docker-compose.yml", *overrides)
        self.public_port = free_port()
        self.prometheus_port = free_port()
        self.kafka_ports = [free_port() for _ in BROKERS]
        self.env = {
            "TRACKPIPE_WORKER_TOKEN": secrets.token_hex(16),
            "TRACKPIPE_PUBLIC_PORT": str(self.public_port),
            "TRACKPIPE_PROMETHEUS_PORT": str(self.prometheus_port),
            **{f"TRACKPIPE_KAFKA_PORT_{i + 1}": str(p) for i, p in enumerate(self.kafka_ports)},
        }

    @property
    def url(self) -> str:
        """nginx, in front of every gateway."""
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)

    def compose(self, *args: str, timeout_s: float = 600) -> str:
        """``docker-compose *args`` on this project; its output, or an AssertionError that
        quotes it."""
        files = [arg for path in self.files for arg in ("--file", str(path))]
        command = ["docker-compose", "--project-name", self.name, *files, *args]
        return run(command, timeout_s, env=self.env)

    def containers(self, service: str) -> list[str]:
        """The ids of the service's containers, running or not, in replica order."""
        ids = self.compose("ps", "-q", service, timeout_s=60).split()
        return sorted(ids, key=lambda c: self.inspect(c)["Name"])

    def inspect(self, container: str) -> dict:
        return json.loads(run(["docker", "inspect", container], 60))[0]

    def unhealthy(self) -> list[str]:
        """The running containers of the project that have a health check and are not
        healthy (yet), by name."""
        waiting = []
        for container in self.compose("ps", "-q", timeout_s=60).split():
            state = self.inspect(container)["State"]
            if state["Running"] and state.get("Health", {}).get("Status", "healthy") != "healthy":
                waiting.append(self.inspect(container)["Name"].lstrip("/"))
        return waiting

    def wait_healthy(self, timeout_s: float) -> None:
        wait_until(self.unhealthy, timeout_s,
                   lambda names: f"containers never healthy: {names}",
                   until=lambda names: not names, every_s=1)

    def kill(self, container: str) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost host would; Docker does not restart a
        container it was told to kill."""
        run(["docker", "kill", "--signal", "KILL", container], 60)
        wait_until(lambda: not self.inspect(container)["State"]["Running"], 30,
                   f"{container} still runs after SIGKILL", every_s=0.1)

    def start(self, container: str) -> None:
        run(["docker", "start", container], 120)

    def copy_out(self, container: str, path: str, target: Path) -> Path:
        """A fresh copy of ``path`` (a folder) of ``container`` as ``target``."""
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        run(["docker", "cp", f"{container}:{path}/.", str(target)], 300)
        return target

    def container_log(self, container: str) -> str:
        """What ``container`` wrote to its stdout and stderr, each line with its time, in
        time order."""
        done = subprocess.run(["docker", "logs", "--timestamps", container],
                              capture_output=True, text=True, timeout=300)
        return "".join(sorted((done.stdout + done.stderr).splitlines(keepends=True)))

    def down(self) -> None:
        """Every container, network and volume of the project gone; the containers' logs
        are kept in ``self.log`` first."""
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self.log.write_text(self.compose("logs", "--no-color", "--timestamps",
                                             timeout_s=300))
        finally:
            self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30")


def run(command: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command[:6])}... exited {done.returncode}:\n"
                             f"{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout
