"""A gateway, processor workers and the triggers service as processes of their own, on a real
broker, for the integration tests that follow HTTP in to logs, topics and webhooks out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from logstore.reading import read_lines
from runtime.settings import Settings
from runtime.topics import create_topics
from schemas.project import ProjectRecord
from tests.conftest import register
from tests.integration.test_cli_and_server import free_port

PROJECT = "shop.example"


class Pipeline:
    """A gateway and workers as processes of their own, stopped by pid at the end."""

    def __init__(self, settings: Settings, tmp: Path, env: dict[str, str] | None = None
                 ) -> None:
        self.settings = settings
        self.tmp = tmp
        self.port = free_port()
        self.env = {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                    "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
                    "TRACKPIPE_DATA_DIR": str(settings.data_dir),
                    "TRACKPIPE_RAW_PARTITIONS": str(settings.raw_partitions),
                    "TRACKPIPE_HTTP_PORT": str(self.port),
                    "TRACKPIPE_ACK_DEADLINE_MS": str(settings.ack_deadline_ms), **(env or {})}
        self.processes: dict[str, subprocess.Popen] = {}
        self.web_ports: dict[str, int] = {}
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, name: str, *args: str) -> subprocess.Popen:
        out = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it
        env = self.env
        if self.web_ports:  # the triggers service looks profiles up at the first worker
            env = {"TRACKPIPE_WORKER_WEB_PORT": str(next(iter(self.web_ports.values()))), **env}
        process = subprocess.Popen([sys.executable, "-m", "trackpipe.cli", *args], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.processes[name] = process
        return process

    def start_worker(self, name: str) -> None:
        self.web_ports[name] = free_port()
        self.start(name, "worker", "--web-port", str(self.web_ports[name]), "--loglevel", "info")

    def profile(self, worker: str, *who: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "trackpipe.cli", "profile", PROJECT, *who,
                               "--web-port", str(self.web_ports[worker])], env=self.env,
                              capture_output=True, text=True, timeout=30)

    def wait_ready(self, name: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        log = self.tmp / f"{name}.log"
        while b"[^Worker]: Ready" not in log.read_bytes():
            assert self.processes[name].poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{name} not ready: {log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def track(self, path: str = "/track/ce", expect: int = 200, **params: object
              ) -> httpx.Response:
        r = httpx.get(self.url + path, params={"project": PROJECT, **params}, timeout=10)
        assert r.status_code == expect, r.text
        return r

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "trackpipe.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)

    def logs(self, event_days: set[str] | None = None, days: list[str] | None = None,
             project: str = PROJECT):
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        return list(read_lines(self.settings.data_dir / "logs", project, days or [today],
                               event_days))

    def wait_logs(self, predicate, timeout_s: float = 30, **kwargs):
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.logs(**kwargs)
            if predicate(lines):
                return lines
            assert time.monotonic() < deadline, f"logs never matched; last: {lines[-5:]}"
            time.sleep(0.2)

    def by_id(self, event_id: str, timeout_s: float = 30, project: str = PROJECT) -> dict:
        lines = self.wait_logs(lambda ls: any(r["id"] == event_id for r in ls), timeout_s,
                               project=project)
        return next(r for r in lines if r["id"] == event_id)

    def topic(self, name: str, predicate, timeout_s: float = 30, decode=json.loads
              ) -> list[dict]:
        return asyncio.run(_read_topic(self.settings, name, predicate, timeout_s, decode))


async def _read_topic(settings: Settings, name: str, predicate, timeout_s: float,
                      decode) -> list:
    consumer = AIOKafkaConsumer(settings.topic(name), bootstrap_servers=settings.kafka_bootstrap,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not predicate(found):
            assert time.monotonic() < deadline, f"{name}: never matched; got {found[-5:]}"
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found += [decode(m.value) for m in records]
        return found
    finally:
        await consumer.stop()


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 1.0):
    """``predicate()``'s first true value, polled; fails with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(poll_s)


def gateway_ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz").status_code == 200
    except httpx.TransportError:
        return False


def prepare(settings: Settings) -> None:
    """The topics and the test project."""
    asyncio.run(create_topics(settings, settings.kafka_bootstrap))
    asyncio.run(register(settings, ProjectRecord.build(PROJECT)))


def start_topology(settings: Settings, tmp: Path, workers: tuple[str, ...], gateways: int = 1,
                   env: dict[str, str] | None = None, triggers: bool = False) -> Pipeline:
    """The workers, ``gateways`` gateways (``p.url`` is the first, ``p.gateway_urls`` all) and
    the triggers service if asked, each ready. The caller stops them (``stop_all``)."""
    p = Pipeline(settings, tmp, env)
    try:
        for worker in workers:
            p.start_worker(worker)
        p.gateway_urls = []
        for i in range(1, gateways + 1):
            port = p.port if i == 1 else free_port()
            p.env["TRACKPIPE_HTTP_PORT"] = str(port)
            p.start("gateway" if gateways == 1 else f"gateway-{i}", "gateway")
            p.gateway_urls.append(f"http://127.0.0.1:{port}")
        if triggers:
            p.start("triggers", "triggers", "run")
        for worker in workers:
            p.wait_ready(worker, timeout_s=120)
        for url in p.gateway_urls:
            wait_until(lambda url=url: gateway_ready(url), 60, f"{url} not ready", 0.2)
    except BaseException:
        p.stop_all()
        raise
    return p


@contextlib.contextmanager
def started_pipeline(kafka_bootstrap: str, tmp: Path, workers: tuple[str, ...],
                     env: dict[str, str] | None = None, triggers: bool = False):
    """Topics, the project, the workers, a gateway (and the triggers service), all ready: a
    probe event has gone through to the logs. Every process is stopped on the way out."""
    settings = Settings(kafka_bootstrap=kafka_bootstrap, raw_partitions=12, ack_deadline_ms=3000,
                        topic_prefix=f"t{uuid.uuid4().hex[:12]}.", data_dir=tmp / "data")
    prepare(settings)
    p = start_topology(settings, tmp, workers, env=env, triggers=triggers)
    try:
        probe = p.track(event="probe", cookie="probe").headers["x-event-id"]
        p.by_id(probe, timeout_s=60)  # every worker has its partitions
        yield p
    finally:
        p.stop_all()
