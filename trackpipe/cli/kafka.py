"""``trackpipe kafka …`` and ``trackpipe topics create``: a local Apache Kafka from Maven
Central's jars (no Docker needed) and the topics trackpipe uses."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from runtime.settings import Settings
from runtime.topics import create_topics
from trackpipe.cli.common import CliError, command, group
from trackpipe.kafka.launcher import LocalKafka


def register(roles: Any) -> None:
    kafka = group(roles, "kafka", "run a local Apache Kafka (KRaft) from Maven Central's jars")
    start = command(kafka, "start", kafka_start, "start the local broker(s) and wait until "
                    "they answer", "trackpipe kafka start --nodes 3")
    start.add_argument("--nodes", type=int, choices=(1, 3), default=None,
                       help="brokers to start (default: TRACKPIPE_LOCAL_KAFKA_NODES)")
    command(kafka, "stop", kafka_stop, "stop the local broker(s)", "trackpipe kafka stop")
    command(kafka, "status", kafka_status, "show whether each local broker runs (exit 1 if "
            "one does not)", "trackpipe kafka status")

    topics = group(roles, "topics", "trackpipe's Kafka topics")
    command(topics, "create", topics_create, "create the topics that do not exist yet",
            "TRACKPIPE_KAFKA_BOOTSTRAP=kafka:9092 trackpipe topics create")


def local_kafka(settings: Settings, nodes: int | None = None) -> LocalKafka:
    return LocalKafka(settings.kafka_dir, settings.local_kafka_port,
                      nodes or settings.local_kafka_nodes)


def kafka_start(settings: Settings, args: argparse.Namespace) -> None:
    if settings.kafka_bootstrap:
        raise CliError("TRACKPIPE_KAFKA_BOOTSTRAP is set: that cluster is used, none is started")
    print(local_kafka(settings, args.nodes).start())


def kafka_stop(settings: Settings, args: argparse.Namespace) -> None:
    for nodes in (3, 1):
        local_kafka(settings, nodes).stop()


def kafka_status(settings: Settings, args: argparse.Namespace) -> int:
    kafka = local_kafka(settings, 3 if (settings.kafka_dir / "node-3").exists() else 1)
    rows = kafka.status()
    for node, pid in rows:
        print(f"node {node}: " + (f"running (pid {pid})" if pid else "stopped"))
    running = all(pid for _, pid in rows)
    if running:
        print(f"bootstrap: {kafka.bootstrap}")
    return 0 if running else 1


def topics_create(settings: Settings, args: argparse.Namespace) -> None:
    created = asyncio.run(create_topics(settings, settings.bootstrap))
    print("created: " + ", ".join(created) if created else "all topics exist")
