"""``trackpipe up``: everything on one machine — a local Kafka (unless
TRACKPIPE_KAFKA_BOOTSTRAP names one), the topics, a demo project, the gateway in this process
and a worker, the triggers service and the dashboard as children; Ctrl-C stops them all."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import threading
import time
import urllib.request
from typing import Any

from runtime import registry
from runtime.settings import Settings
from runtime.topics import create_topics
from schemas.project import ProjectRecord, new_webhook_secret
from trackpipe.children import Children
from trackpipe.cli.common import command, registry_topic
from trackpipe.cli.kafka import local_kafka
from trackpipe.cli.roles import add_server_options, serve_gateway, server_settings

DEMO_PROJECT = "demo.example"


def register(roles: Any) -> None:
    up = command(roles, "up", run_up, "everything on one machine: local Kafka, topics, demo "
                 "project, gateway, a worker, the triggers service and the dashboard",
                 "trackpipe up --port 8080")
    add_server_options(up)
    up.add_argument("--no-demo", action="store_true",
                    help=f"do not register the demo project {DEMO_PROJECT}")
    up.set_defaults(serves=True)


def run_up(settings: Settings, args: argparse.Namespace) -> None:
    settings = server_settings(args)
    kafka = None if settings.kafka_bootstrap else local_kafka(settings)
    if kafka is not None:
        print("starting the local Kafka...", flush=True)
        kafka.start()
    try:
        bootstrap = settings.bootstrap
        asyncio.run(create_topics(settings, bootstrap))
        if not args.no_demo:
            asyncio.run(_ensure_demo(settings))
        # The processors run as their own process: faust and uvicorn each own an event loop.
        children = Children({name: [sys.executable, "-m", "trackpipe.cli", *role]
                             for name, role in (("worker", ["worker"]),
                                                ("triggers service", ["triggers", "run"]),
                                                ("dashboard", ["dashboard"]))},
                            {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": bootstrap})
        children.start()
        url = f"http://{settings.http_host}:{settings.http_port}"
        print(f"\ntrackpipe is up: Kafka at {bootstrap}, gateway at {url}\n"
              "try:\n"
              f"  curl -i '{url}/track/ce?project={DEMO_PROJECT}&event=pv&cookie=c1"
              "&ce_url=%2Fhome&response=json'\n"
              f"logs: .venv/bin/trackpipe logs {DEMO_PROJECT} --follow\n"
              f"timeline: .venv/bin/trackpipe timeline {DEMO_PROJECT} --cookie c1\n"
              f"dashboard: http://{settings.admin_host}:{settings.admin_port}/\n"
              "Ctrl-C stops everything.\n", flush=True)
        if sys.stdout.isatty():
            threading.Thread(target=_status_line, args=(settings,), daemon=True).start()
        try:
            serve_gateway(settings, args.workers)
        finally:
            children.stop()
    finally:
        if kafka is not None:
            print("stopping the local Kafka...", flush=True)
            kafka.stop()


def _status_line(settings: Settings) -> None:
    """Keep one terminal line with the dashboard's numbers, rewritten every second."""
    from trackpipe.dashboard.summary import status_line

    url = f"http://127.0.0.1:{settings.admin_port}/api/summary"
    if settings.admin_token:
        url += f"?token={settings.admin_token}"
    while True:
        time.sleep(1)
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                summary = json.loads(answer.read())["summary"]
        except (OSError, ValueError, KeyError):
            continue
        if summary:
            sys.stdout.write("\r\x1b[2K" + status_line(summary))
            sys.stdout.flush()


async def _ensure_demo(settings: Settings) -> None:
    """The demo project, with a webhook secret (one made by an older version had none, and
    the triggers service holds a project's webhooks until it has one)."""
    bootstrap, topic = registry_topic(settings)
    demo = (await registry.read_all(bootstrap, topic)).get(DEMO_PROJECT)
    if demo is None or not demo.webhook_secret:
        await registry.write(bootstrap, topic, DEMO_PROJECT, dataclasses.replace(
            demo or ProjectRecord.build(DEMO_PROJECT), webhook_secret=new_webhook_secret()))
