"""The long-running roles, each its own process so that each can be scaled: ``gateway``,
``worker``, ``dashboard`` (and ``triggers run``, listed with the triggers)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
from typing import Any

from runtime.settings import Settings
from trackpipe.cli.common import command


def register(roles: Any) -> None:
    gateway = command(roles, "gateway", run_gateway, "run the HTTP gateway (the tracking API)",
                      "trackpipe gateway --port 8080 --workers 4")
    add_server_options(gateway)
    worker = command(roles, "worker", run_worker, "run a stream processor worker (faust): "
                     "identities, visits, profiles, day logs",
                     "trackpipe worker --web-port 6067")
    worker.add_argument("--web-port", type=int, help="the worker's web port "
                        "(TRACKPIPE_WORKER_WEB_PORT); give each local worker its own")
    worker.add_argument("--loglevel", default="warning", help="faust's log level "
                        "(default: warning)")
    dashboard = command(roles, "dashboard", run_dashboard, "serve the live dashboard on the "
                        "admin port", "trackpipe dashboard --port 8081")
    dashboard.add_argument("--host", help="listen address (TRACKPIPE_ADMIN_HOST)")
    dashboard.add_argument("--port", type=int, help="listen port (TRACKPIPE_ADMIN_PORT)")
    for parser in (gateway, worker, dashboard):
        parser.set_defaults(serves=True)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (TRACKPIPE_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="listen port (TRACKPIPE_HTTP_PORT)")
    parser.add_argument("--workers", type=int, default=1,
                        help="gateway processes sharing the port (default: 1)")


def server_settings(args: argparse.Namespace) -> Settings:
    """Apply --host/--port to this process and to the uvicorn workers it spawns."""
    if args.host:
        os.environ["TRACKPIPE_HTTP_HOST"] = args.host
    if args.port:
        os.environ["TRACKPIPE_HTTP_PORT"] = str(args.port)
    return Settings.from_env()


def serve_gateway(settings: Settings, workers: int) -> None:
    import uvicorn

    # proxy_headers off: the gateway believes X-Forwarded-For only from the configured trusted
    # proxies (gateway.addresses), never uvicorn's own default of any loopback peer.
    uvicorn.run("gateway.main:create_app", factory=True, host=settings.http_host,
                port=settings.http_port, workers=workers, loop="uvloop",
                http="gateway.http:GatewayProtocol", limit_concurrency=settings.max_connections,
                access_log=False, lifespan="on", log_level="info", proxy_headers=False)


def run_gateway(settings: Settings, args: argparse.Namespace) -> None:
    serve_gateway(server_settings(args), args.workers)


def run_worker(settings: Settings, args: argparse.Namespace) -> None:
    import mode.loop

    mode.loop.use("uvloop")  # a fifth more events a second than asyncio's loop (benchmarks.md)
    from faust.worker import Worker as FaustWorker

    from processors.worker import Worker

    worker = Worker(settings, settings.bootstrap,
                    args.web_port or settings.worker_web_port)
    # A worker makes millions of short-lived objects and few cycles: what was built at start
    # is left out of the cyclic collector's passes, which run 140 times less often
    # (docs/benchmarks.md: 3-5 % of a record's own handling).
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    FaustWorker(worker.app, loglevel=args.loglevel, quiet=True,
                redirect_stdouts=False).execute_from_commandline()


def run_triggers(settings: Settings, args: argparse.Namespace) -> None:
    from triggers.service import TriggerService

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = TriggerService(settings, settings.bootstrap)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await service.run(stop)

    asyncio.run(main())


def run_dashboard(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from trackpipe.dashboard.server import create_app

    overrides = {"admin_host": args.host, "admin_port": args.port}
    if any(v is not None for v in overrides.values()):
        settings = Settings.from_env(**overrides)  # validated again: a token off loopback
    uvicorn.run(create_app(settings, settings.bootstrap), host=settings.admin_host,
                port=settings.admin_port, log_level="warning", access_log=False)
