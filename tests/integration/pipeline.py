"""A gateway, processor workers and the triggers service as processes of their own, on a real
broker, for the integration tests that follow HTTP in to logs, topics and webhooks out; and what
the tests that start such processes share: free ports, the CLI, Ctrl-C, a status answered, a
topic read from its start to its end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway import snapshot
from logstore.reading import read_lines
from runtime.partition import committed_offsets
from runtime.settings import Settings
from runtime.topics import create_topics
from schemas.project import ProjectRecord
from tests.conftest import drop_topics, partitions_of, records, register
from tests.waiting import wait_until

PROJECT = "shop.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``trackpipe *args`` as a user runs it, in ``env``."""
    return subprocess.run([sys.executable, "-m", "trackpipe.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def interrupt(process: subprocess.Popen, timeout_s: float) -> None:
    """Ctrl-C (SIGINT), and SIGKILL if it has not stopped within ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def status_of(url: str, **request: Any) -> int | None:
    """The status ``url`` answers a GET with; None when nothing answers (not listening yet)."""
    try:
        return httpx.get(url, **request).status_code
    except httpx.TransportError:
        return None


def wait_status(url: str, expected: int, timeout_s: float, **request: Any) -> None:
    """Until ``url`` answers ``expected``."""
    wait_until(lambda: status_of(url, **request), timeout_s,
               lambda last: f"{url} answered {last}, not {expected}",
               until=lambda status: status == expected, every_s=0.05)


@contextlib.contextmanager
def gateway_alone(settings: Settings, project: str, **env: str):
    """A ``trackpipe gateway`` process (no nginx in front, no worker) on ``settings``' broker
    and topics, with ``project`` registered and ``env``'s settings on top: its base URL and
    process once it answers ``project``'s requests, interrupted on the way out."""
    env = {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
           "TRACKPIPE_DATA_DIR": str(settings.data_dir), "TRACKPIPE_HTTP_PORT": str(free_port()),
           "TRACKPIPE_ACK_DEADLINE_MS": "3000", **env}
    assert cli(env, "projects", "add", project).returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "trackpipe.cli", "gateway"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{env['TRACKPIPE_HTTP_PORT']}"
    try:
        wait_status(f"{url}/track/ce?project={project}", 200, 60)
        yield url, process
    finally:
        interrupt(process, timeout_s=15)


def gateway_ready(url: str) -> bool:
    return status_of(url + "/readyz") == 200


def gateway_knows(settings: Settings, name: str, **fields: object) -> bool:
    """True once the gateway's view of the registry (the snapshot it saves at each change,
    after applying it) holds project ``name`` with these ``fields``: a probe that sends
    nothing, so counts nothing against a quota."""
    records = snapshot.load(settings.data_dir / "registry.snapshot") or []
    return any(r.name == name and all(getattr(r, k) == v for k, v in fields.items())
               for r in records)


def metric(base_url: str, name: str) -> float:
    """The sum of every series of family ``name`` a process's ``/metrics`` shows."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


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
        log = self.tmp / f"{name}.log"

        def ready() -> bool:
            assert self.processes[name].poll() is None, log.read_text()[-3000:]
            return b"[^Worker]: Ready" in log.read_bytes()

        wait_until(ready, timeout_s, lambda _: f"{name} not ready: {log.read_text()[-3000:]}",
                   every_s=0.2)

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

    def track(self, path: str = "/track/ce", expect: int | None = 200, **params: object
              ) -> httpx.Response:
        """A tracking request to the gateway; its answer must be ``expect`` (None: any)."""
        r = httpx.get(self.url + path, params={"project": PROJECT, **params}, timeout=10)
        assert expect is None or r.status_code == expect, r.text
        return r

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return cli(self.env, *args)

    def lookup(self, table: str, identifier: str, worker: str | None = None,
               project: str = PROJECT) -> Any:
        """A worker's lookup page for ``identifier`` (``cookie:…``, ``email:…``, a profile
        id) in ``table`` (visitor, identity, profile), as `trackpipe profile` asks it;
        None: not there (yet)."""
        port = self.web_ports[worker] if worker else next(iter(self.web_ports.values()))
        token = self.env.get("TRACKPIPE_WORKER_TOKEN")
        answer = httpx.get(f"http://127.0.0.1:{port}/lookup/{table}",
                           params={"key": f"{project}\n{identifier}"}, timeout=10,
                           headers={"Authorization": f"Bearer {token}"} if token else {})
        answer.raise_for_status()
        return answer.json()

    def owns(self, identifier: str, profile: str, project: str = PROJECT) -> None:
        """Until the identities table gives ``identifier`` (``email:…``, ``id:…``) to
        ``profile``: its link has landed."""
        wait_until(lambda: self.lookup("identity", identifier, project=project), 30,
                   lambda entry: f"{identifier} belongs to {entry}, not {profile}",
                   until=lambda entry: entry is not None and entry["profile"] == profile)

    def rebound(self, cookie: str, profile: str, project: str = PROJECT) -> None:
        """Until the visitors table gives device ``cookie`` to ``profile``: the rebind a
        merge sends has reached the device's partition, so its next action is the
        profile's."""
        wait_until(lambda: self.lookup("visitor", f"cookie:{cookie}", project=project), 30,
                   lambda entry: f"cookie {cookie} is {entry}, not of {profile}",
                   until=lambda entry: entry is not None
                   and entry["state"]["profile"] == profile)

    def logs(self, event_days: set[str] | None = None, days: list[str] | None = None,
             project: str = PROJECT):
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        return list(read_lines(self.settings.data_dir / "logs", project, days or [today],
                               event_days))

    def wait_logs(self, predicate, timeout_s: float = 30, **kwargs):
        return wait_until(lambda: self.logs(**kwargs), timeout_s,
                          lambda lines: f"logs never matched; last: {lines[-5:]}",
                          until=predicate, every_s=0.2)

    def by_id(self, event_id: str, timeout_s: float = 30, project: str = PROJECT) -> dict:
        lines = self.wait_logs(lambda ls: any(r["id"] == event_id for r in ls), timeout_s,
                               project=project)
        return next(r for r in lines if r["id"] == event_id)

    def handled(self, *names: str, timeout_s: float = 30) -> None:
        """Until the workers committed every offset that topics ``names`` hold now: what
        their handling sent is then in Kafka too (a worker commits an offset only once the
        outputs of its handling are acknowledged: processors.checkpoint)."""
        tps = [TopicPartition(self.settings.topic(name), p) for name in names
               for p in partitions_of(self.settings, name)]
        ends = asyncio.run(_end_offsets(self.settings.kafka_bootstrap, tps))
        group = self.settings.topic_prefix + "processors"  # the faust app's id
        wait_until(lambda: asyncio.run(committed_offsets(self.settings.kafka_bootstrap, group,
                                                         tps)), timeout_s,
                   lambda committed: f"committed {committed}, not yet {ends}",
                   until=lambda committed: all(committed.get(tp, 0) >= end
                                               for tp, end in ends.items()), every_s=0.2)

    def read(self, name: str, decode: Callable[[bytes], Any] = json.loads) -> list[Any]:
        """The values topic ``name`` holds now, decoded."""
        return [decode(r.value) for r in asyncio.run(records(self.settings, name))]

    def topic(self, name: str, predicate, timeout_s: float = 30, decode=json.loads
              ) -> list[Any]:
        """The values of topic ``name`` (read from its start to its end) once ``predicate``
        holds for them."""
        return wait_until(lambda: self.read(name, decode), timeout_s,
                          lambda found: f"{name}: never matched; got {found[-5:]}",
                          until=predicate, every_s=0.2)


async def _end_offsets(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


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
            wait_until(lambda url=url: gateway_ready(url), 60, f"{url} not ready", every_s=0.2)
    except BaseException:
        p.stop_all()
        raise
    return p


@contextlib.contextmanager
def started_pipeline(kafka_bootstrap: str, tmp: Path, workers: tuple[str, ...],
                     env: dict[str, str] | None = None, triggers: bool = False):
    """Topics, the project, the workers, a gateway (and the triggers service), all ready: a
    probe event has gone through to the logs. Every process is stopped on the way out, and
    the topics are deleted."""
    settings = Settings(kafka_bootstrap=kafka_bootstrap, raw_partitions=12, ack_deadline_ms=3000,
                        topic_prefix=f"t{uuid.uuid4().hex[:12]}.", data_dir=tmp / "data")
    prepare(settings)
    try:
        p = start_topology(settings, tmp, workers, env=env, triggers=triggers)
        try:
            probe = p.track(event="probe", cookie="probe").headers["x-event-id"]
            p.by_id(probe, timeout_s=60)  # every worker has its partitions
            yield p
        finally:
            p.stop_all()
    finally:
        asyncio.run(drop_topics(kafka_bootstrap, settings.topic_prefix))
