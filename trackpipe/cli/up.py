"""``trackpipe up``: everything on one machine — a local Kafka (unless
TRACKPIPE_KAFKA_BOOTSTRAP names one), the topics, a demo project with a demo trigger, the
gateway in this process and a worker, the triggers service and the dashboard as children.

What a person sees (``trackpipe.console``): where the libraries' logs go, what is still being
waited for, the ready lines once every role answers (``trackpipe.readiness``), then one status
line on a terminal. Everything uvicorn, aiokafka, faust and the children print goes to
``<data>/trackpipe-up.log``. Ctrl-C, SIGTERM or a closed terminal (SIGHUP) stop the gateway,
then the children, then the local Kafka, whatever the output is piped to; another Ctrl-C
meanwhile does not cut that short.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from runtime import registry
from runtime.settings import Settings
from runtime.topics import create_topics
from schemas import topics
from schemas.project import ProjectRecord, new_webhook_secret
from schemas.trigger import Condition, TriggerRule
from trackpipe import console, readiness
from trackpipe.children import Children
from trackpipe.cli.common import CliError, command, registry_topic
from trackpipe.cli.kafka import local_kafka
from trackpipe.cli.roles import add_server_options, serve_gateway, server_settings

DEMO_PROJECT = "demo.example"
# Harmless on purpose: a line in the visitor's browser console, for every purchase.
DEMO_TRIGGER = TriggerRule.build(DEMO_PROJECT, "thank-buyer", "purchase",
                                 conditions=(Condition("ce_amount", ">", "0"),),
                                 js='console.log("trackpipe demo: thank you for your order")')
LOG_NAME = "trackpipe-up.log"
PROBE_EVERY_S = 0.25


def register(roles: Any) -> None:
    up = command(roles, "up", run_up, "everything on one machine: local Kafka, topics, demo "
                 "project, gateway, a worker, the triggers service and the dashboard",
                 "trackpipe up --port 8080")
    add_server_options(up)
    up.add_argument("--no-demo", action="store_true",
                    help=f"do not register the demo project {DEMO_PROJECT} and its trigger")
    up.set_defaults(serves=True)


def run_up(settings: Settings, args: argparse.Namespace) -> None:
    settings = server_settings(args)
    _check_ports_free(settings)
    log = settings.data_dir / LOG_NAME
    with console.captured(log) as screen:
        _run(settings, args, screen, log)


def _run(settings: Settings, args: argparse.Namespace, screen: console.Console,
         log: Path) -> None:
    logging.basicConfig(level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    handlers = _interrupt_on(signal.SIGTERM, signal.SIGHUP)
    kafka = None if settings.kafka_bootstrap else local_kafka(settings)
    children: Children | None = None
    stopping = threading.Event()
    failed = ""
    screen.say(f"trackpipe up: what the libraries log goes to {log}")
    try:
        if kafka is not None:
            screen.progress("starting the local Kafka…")
            kafka.start()
        bootstrap = settings.bootstrap
        screen.progress("creating the topics…")
        asyncio.run(create_topics(settings, bootstrap))
        if not args.no_demo:
            asyncio.run(ensure_demo(settings))
        # The processors run as their own process: faust and uvicorn each own an event loop.
        children = Children({name: [sys.executable, "-m", "trackpipe.cli", *role]
                             for name, role in ((readiness.WORKER, ["worker"]),
                                                (readiness.TRIGGERS, ["triggers", "run"]),
                                                (readiness.DASHBOARD, ["dashboard"]))},
                            {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": bootstrap},
                            report=screen.say)
        children.start()
        threading.Thread(target=_watch, name="console", daemon=True,
                         args=(settings, bootstrap, screen, log, stopping, args.no_demo)).start()
        serve_gateway(settings, args.workers)
    except KeyboardInterrupt:
        pass  # Ctrl-C while starting; while serving, uvicorn stops and hands it on
    except SystemExit as exc:  # how uvicorn says that the gateway could not start
        failed = f"the gateway stopped (exit status {exc.code}); why is at the end of {log}"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stopping below is not cut short
        stopping.set()
        screen.end_status()
        screen.say("trackpipe up: stopping the worker, the triggers service, the dashboard"
                   + (" and the local Kafka…" if kafka is not None else "…"))
        if children is not None:
            children.stop()
        if kafka is not None:
            kafka.stop()
        screen.say("trackpipe up: stopped")
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if failed:
        raise CliError(failed)


def _interrupt_on(*signums: int) -> dict[int, Any]:
    """SIGTERM (and SIGHUP, a closed terminal, as SIGTERM) stop ``up`` as Ctrl-C does: by
    default they would end it at once and leave its children and Kafka running. While the
    gateway serves, uvicorn takes SIGTERM over, stops gracefully and raises it again here."""
    def interrupt(signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            signal.raise_signal(signal.SIGTERM)
        else:
            raise KeyboardInterrupt

    return {signum: signal.signal(signum, interrupt) for signum in
            (*signums, signal.SIGINT)}


def _check_ports_free(settings: Settings) -> None:
    """Refuse before starting anything when a port is taken (a second `make run`)."""
    for host, port, role, option in (
            (settings.http_host, settings.http_port, "the gateway", "--port or "
             "TRACKPIPE_HTTP_PORT"),
            (settings.worker_web_host, settings.worker_web_port, "the worker's web pages",
             "TRACKPIPE_WORKER_WEB_PORT"),
            (settings.admin_host, settings.admin_port, "the dashboard", "TRACKPIPE_ADMIN_PORT")):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise CliError(f"port {port} for {role} on {host} is taken ({exc.strerror}): "
                               f"is trackpipe already running? ({option} picks another)"
                               ) from None


def _watch(settings: Settings, bootstrap: str, screen: console.Console, log: Path,
           stopping: threading.Event, no_demo: bool) -> None:
    """Say what is waited for until every role answers, then the ready lines, then keep the
    status line."""
    if not asyncio.run(_until_ready(settings, bootstrap, screen, stopping)):
        return
    screen.say(_ready_text(settings, bootstrap, log, no_demo))
    from trackpipe.dashboard.summary import status_line

    url = readiness.local_url(settings.admin_host, settings.admin_port, "/api/summary")
    if settings.admin_token:
        url += f"?token={settings.admin_token}"
    while screen.tty and not stopping.wait(1):
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                summary = json.loads(answer.read())["summary"]
        except (OSError, ValueError, KeyError):
            continue
        if summary and not stopping.is_set():
            screen.status(status_line(summary))


async def _until_ready(settings: Settings, bootstrap: str, screen: console.Console,
                       stopping: threading.Event) -> bool:
    probes = readiness.Probes(settings, bootstrap)
    try:
        while not stopping.is_set():
            answers = await probes.answering()
            waiting = [role for role, answered in answers.items() if not answered]
            if not waiting:
                return True
            screen.progress("starting: waiting for the " + ", the ".join(waiting) + "…")
            await asyncio.sleep(PROBE_EVERY_S)
        return False
    finally:
        await probes.close()


def _ready_text(settings: Settings, bootstrap: str, log: Path, no_demo: bool) -> str:
    url = readiness.local_url(settings.http_host, settings.http_port, "")
    dashboard = readiness.local_url(settings.admin_host, settings.admin_port, "/")
    lines = [f"trackpipe is up: Kafka at {bootstrap}, gateway at {url}, dashboard at "
             f"{dashboard}"]
    if not no_demo:
        lines += [
            "try:",
            "  .venv/bin/trackpipe demo traffic     # visitors browsing, signing up, buying",
            f"  curl -i '{url}/track/ce?project={DEMO_PROJECT}&event=pv&cookie=c1"
            "&ce_url=%2Fhome&response=json'",
            "then:",
            f"  .venv/bin/trackpipe logs {DEMO_PROJECT} --follow",
            f"  .venv/bin/trackpipe timeline {DEMO_PROJECT} --cookie c1",
            f"  .venv/bin/trackpipe query {DEMO_PROJECT} \"SELECT event, count(*) FROM actions "
            "GROUP BY event\""]
    lines.append(f"the libraries' logs: {log} · Ctrl-C stops everything")
    return "\n".join(lines)


async def ensure_demo(settings: Settings) -> None:
    """The demo project, with a webhook secret (one made by an older version had none, and
    the triggers service holds a project's webhooks until it has one), and a trigger when it
    has none (a purchase of `trackpipe demo traffic` fires it)."""
    bootstrap, topic = registry_topic(settings)
    demo = (await registry.read_all(bootstrap, topic)).get(DEMO_PROJECT)
    if demo is None or not demo.webhook_secret:
        await registry.write(bootstrap, topic, DEMO_PROJECT, dataclasses.replace(
            demo or ProjectRecord.build(DEMO_PROJECT), webhook_secret=new_webhook_secret()))
    rules_topic = settings.topic(topics.TRIGGERS)
    rules = await registry.read_all(bootstrap, rules_topic, TriggerRule.from_bytes)
    if not any(rule.project == DEMO_PROJECT for rule in rules.values()):
        await registry.write(bootstrap, rules_topic, DEMO_TRIGGER.key, DEMO_TRIGGER)
