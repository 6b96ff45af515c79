"""Shared fixtures: a real Kafka broker for the session, and factories for what tests build.

The broker is, in order: ``TRACKPIPE_KAFKA_BOOTSTRAP`` if set; else, when a Docker engine
answers, the Kafka image `make images` builds, started through testcontainers
(tests/kafka_container.py); else the project's own local Kafka (Maven jars), started here on
free ports and stopped by pid at the end. A broker that cannot be had fails the
suite; it is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from gateway.main import Gateway
from runtime import registry
from runtime.partition import read_topic
from runtime.settings import Settings
from runtime.topics import create_topics
from schemas import envelope, topics
from schemas.partitioning import partition_for
from schemas.project import ProjectRecord
from schemas.raw import RawRecord
from tests.waiting import wait_until_async
from trackpipe.kafka.launcher import LauncherError, LocalKafka, free_port_block

CLIENT_IP = "203.0.113.9"


def _docker_answers() -> bool:
    """True when a Docker engine answers /_ping on its socket (testcontainers needs one)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine: let testcontainers try it
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(host.removeprefix("unix://"))
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in s.recv(64)
    except OSError:
        return False


def no_broker(reason: str) -> None:
    """A broker that cannot start fails the integration tests, loudly: a skipped suite would
    let `make test` pass having tested nothing that touches Kafka."""
    pytest.fail(f"no Kafka broker for the integration tests: {reason}")


@contextlib.contextmanager
def started_kafka(folder: Path, **options: object) -> Iterator[LocalKafka]:
    """A local broker on free ports, killed by pid afterwards (nothing of it is kept, and a
    clean shutdown takes seconds a node). A port can be taken between choosing it and the JVM
    binding it, so a failed start is tried once more on new ports."""
    error: LauncherError | None = None
    for attempt in range(2):
        kafka = LocalKafka(folder / f"try-{attempt}", port=free_port_block(), **options)
        try:
            kafka.start(timeout_s=120)
        except LauncherError as exc:
            kafka.stop(sig=signal.SIGKILL)
            error = exc
            continue
        try:
            yield kafka
        finally:
            kafka.stop(sig=signal.SIGKILL)
        return
    no_broker(str(error))


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("TRACKPIPE_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    if _docker_answers():
        from tests.kafka_container import started_kafka_container

        with started_kafka_container() as bootstrap:
            yield bootstrap
        return
    with started_kafka(tmp_path_factory.mktemp("kafka")) as kafka:
        yield kafka.bootstrap


@pytest.fixture
def settings_factory(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Settings with a topic prefix of their own, so tests never see each other's data; the
    topics made under them on the suite's broker are deleted afterwards (``drop_topics``)."""
    made: list[Settings] = []

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka_bootstrap": kafka_bootstrap,
            "topic_prefix": f"t{uuid.uuid4().hex[:12]}.",
            "data_dir": tmp_path / "data",
            "raw_partitions": 4,
            # A loaded CI machine can take more than 300 ms to ack; tests of the 202 path set
            # the contract's deadline themselves.
            "ack_deadline_ms": 3000,
        }
        values.update(overrides)
        made.append(Settings(**values))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for done in made:
        if done.kafka_bootstrap == kafka_bootstrap:  # a test's own broker goes as a whole
            asyncio.run(drop_topics(kafka_bootstrap, done.topic_prefix))


async def drop_topics(bootstrap: str, prefix: str) -> None:
    """Delete the topics whose names start with ``prefix`` (a test's, once it is over). The
    suite's broker would otherwise keep every test's, thousands of them, and all that asks it
    for every topic's metadata slows down with each: creating a test's topics took 0.3 s on a
    fresh broker and 2.5 s on one holding 3,000 topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


@pytest.fixture
async def settings(settings_factory: Callable[..., Settings]) -> Settings:
    made = settings_factory()
    await create_topics(made, made.kafka_bootstrap)
    return made


async def register(settings: Settings, *records: ProjectRecord) -> None:
    for record in records:
        await registry.write(settings.kafka_bootstrap, settings.topic(topics.PROJECTS),
                             record.name, record)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A running gateway (real publisher, real registry follower) with the shop project."""
    gw = Gateway(settings, settings.kafka_bootstrap)
    async with gw.running():
        await register(settings, ProjectRecord.build("shop.example", aliases=("www.shop.example",)))
        await wait_until_async(lambda: gw.projects.find("shop.example") is not None
                               and gw.readiness()["kafka"], 10,
                               "the gateway never knew shop.example or never reached Kafka")
        yield gw


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway, client=(CLIENT_IP, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c


def partitions_of(settings: Settings, name: str) -> range:
    """The partitions of topic ``name`` (schemas.topics) under ``settings``."""
    spec = next(spec for spec in topics.TOPICS if spec.name == name)
    return range(spec.partitions or settings.raw_partitions)


async def records(settings: Settings, name: str, **consumer_options: Any) -> list[Any]:
    """Every record topic ``name`` holds now, from its start to its end (runtime.partition)."""
    return [record async for record in read_topic(
        settings.kafka_bootstrap, settings.topic(name), partitions_of(settings, name),
        **consumer_options)]


async def read_raw(settings: Settings, expected: int, timeout_s: float = 15
                   ) -> list[tuple[bytes, RawRecord]]:
    """Every raw record the topic holds, with its key, once it holds at least ``expected``.
    The topic is read to its end, so a test also sees records that should not be there: what
    a request made is in it once the gateway answered 200 (it answers after Kafka's
    acknowledgement), and once a spool is drained. Records travel in envelopes; each must be in
    the partition its key hashes to."""
    async def read() -> list[tuple[bytes, RawRecord]]:
        found = []
        for message in await records(settings, topics.RAW):
            for item in envelope.unpack(message.value):
                record = RawRecord.from_obj(item)
                key = record.kafka_key()
                assert partition_for(key, settings.raw_partitions) == message.partition
                found.append((key, record))
        return found

    return await wait_until_async(read, timeout_s,
                                  lambda found: f"{len(found)} of {expected} raw records",
                                  until=lambda found: len(found) >= expected, every_s=0.1)
