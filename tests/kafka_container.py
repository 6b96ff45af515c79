"""The integration tests' broker in a container, when a Docker engine answers: the Kafka image
`make images` builds here (trackpipe/kafka: the local launcher's jars on Debian's OpenJDK),
started through testcontainers and removed afterwards.

One KRaft node. Its client port is published on 127.0.0.1 only, on a free port chosen here,
because the broker must advertise the very address the tests reach it at; a port taken between
choosing it and the engine binding it is tried once more. Ryuk, testcontainers' reaper, is not
started: its image is on Docker Hub, and the container is removed by the ``with`` anyway.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import docker
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from tests.conftest import no_broker
from trackpipe.kafka.launcher import KAFKA_VERSION, new_cluster_id

IMAGE = f"trackpipe/kafka:{KAFKA_VERSION}"
CLIENT_PORT = 9094  # the image's listener for clients outside the container's network
STARTED = "Kafka Server started"


def broker(host_port: int) -> DockerContainer:
    """A single-node cluster whose clients outside the engine use 127.0.0.1:``host_port``."""
    container = DockerContainer(IMAGE).with_envs(
        CLUSTER_ID=new_cluster_id(),
        KAFKA_NODE_ID="1",
        KAFKA_PROCESS_ROLES="broker,controller",
        KAFKA_LISTENERS=f"PLAINTEXT://:9092,CONTROLLER://:9093,EXTERNAL://:{CLIENT_PORT}",
        KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://localhost:9092,"
                                   f"EXTERNAL://127.0.0.1:{host_port}",
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                                             "EXTERNAL:PLAINTEXT",
        KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
        KAFKA_INTER_BROKER_LISTENER_NAME="PLAINTEXT",
        KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
        KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS="12",
        KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
        KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
        KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
        KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        KAFKA_HEAP_OPTS="-Xmx512m -Xms512m",
    )
    # published on loopback only (with_bind_ports would bind every interface)
    container.ports[f"{CLIENT_PORT}/tcp"] = ("127.0.0.1", host_port)
    return container.waiting_for(LogMessageWaitStrategy(STARTED).with_startup_timeout(120))


@contextlib.contextmanager
def started_kafka_container() -> Iterator[str]:
    """The bootstrap address of a broker from the local image, removed on the way out; the
    integration tests fail (never skip) when it cannot be had."""
    testcontainers_config.ryuk_disabled = True
    client = docker.from_env()
    try:
        client.images.get(IMAGE)
    except Exception as exc:  # docker.errors.ImageNotFound, or the engine went away
        no_broker(f"a Docker engine answers but has no image {IMAGE} ({exc}): build it with "
                  "`make images`, or run the tests without an engine (the local launcher)")
    finally:
        client.close()
    error: Exception | None = None
    for _ in range(2):
        port = free_port()
        container = broker(port)
        try:
            container.start()
        except Exception as exc:  # the port taken meanwhile, or the broker never started
            error = exc
            container.stop()
            continue
        try:
            yield f"127.0.0.1:{port}"
        finally:
            container.stop()
        return
    no_broker(f"the Kafka container did not start: {error}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
