"""Assembles a gateway process: tracking handler, operational routes, and their lifecycle.

``create_app`` is the uvicorn factory. Tracking paths go straight to ``TrackingApp``; every
other path (``/healthz``, ``/readyz``, ``/metrics``, and 404s) is served by FastAPI, whose
lifespan starts the publisher (Kafka producer + spool) and the registry follower, and stops
them so that nothing accepted is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from gateway import snapshot
from gateway.app import TrackingApp, route
from gateway.errors import UrlTooLong
from gateway.expansion import PushBound
from gateway.http import HEADERS_TOO_LARGE, URL_TOO_LONG
from gateway.jsactions import JsQueue
from gateway.metrics import Metrics
from gateway.projects import ProjectTable
from gateway.publisher import Publisher
from gateway.spool import Spool, claim_slot
from gateway.warnings_buffer import WarningBuffer
from runtime import compacted, registry
from runtime.settings import Settings
from schemas import topics
from schemas.project import ProjectRecord
from schemas.quota import QuotaState

log = logging.getLogger(__name__)


class Gateway:
    """The ASGI application of one gateway process."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.metrics = Metrics()
        self.projects = ProjectTable()
        self.quotas: dict[str, QuotaState] = {}
        self.js_actions = JsQueue(time.monotonic)
        self.warnings = WarningBuffer(settings.topic(topics.WARNINGS), settings.raw_partitions,
                                      self.metrics.warnings)
        self.publisher: Publisher | None = None
        self.tracking: TrackingApp | None = None
        self.ops = self._ops_app()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.tracking is not None:
            too_long = (scope.get("extensions") or {}).get(URL_TOO_LONG)
            if too_long:  # the HTTP protocol did not keep it (gateway.http)
                await self.tracking.refuse(send, UrlTooLong(
                    f"the URL is {too_long} bytes, over {self.tracking.max_url_bytes}"),
                    "unknown", self.tracking.ids.next()[0])
                return
            found = route(scope["path"])
            if found is not None:
                await self.tracking(scope, receive, send, *found)
                return
        await self.ops(scope, receive, send)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Start the publisher and the followers of the registry and quota topics; stop them
        on exit, so that nothing accepted is left behind."""
        folder, lock_fd = claim_slot(self.settings.spool_dir)
        self.publisher = Publisher(self.bootstrap, self.settings.topic(topics.RAW),
                                   Spool(folder, self.settings.spool_max_bytes),
                                   self.settings.ack_deadline_ms, self.metrics,
                                   self.settings.topic(topics.DEADLETTER),
                                   self.settings.envelope_linger_ms, self.warnings)
        await self.publisher.start()
        self.tracking = TrackingApp(
            self.projects, self.publisher.publish, self.metrics,
            max_url_bytes=self.settings.max_url_bytes,
            max_body_bytes=self.settings.max_body_bytes,
            max_push_lines=self.settings.max_push_lines,
            push_bound=PushBound(self.settings.max_push_expansion,
                                 self.settings.push_expansion_floor_bytes),
            body_timeout_ms=self.settings.body_timeout_ms,
            trusted_proxies=self.settings.trusted_networks, quotas=self.quotas,
            js_actions=self.js_actions, forget_js=self._forget_js, warnings=self.warnings)
        snapshot_file = self.settings.data_dir / "registry.snapshot"
        known = snapshot.load(snapshot_file)
        if known is not None:  # Kafka may be down right now: start from the last view
            for record in known:
                self.projects.apply(record.name, record)
            self.projects.mark_loaded()
        followers = [
            asyncio.create_task(self._follow_registry(snapshot_file), name="registry-follower"),
            asyncio.create_task(self._follow(topics.QUOTA, partial(compacted.apply, self.quotas),
                                             lambda: None, QuotaState.from_bytes),
                                name="quota-follower"),
            asyncio.create_task(self._follow(topics.JS_ACTIONS, self.js_actions.apply,
                                             lambda: None, bytes), name="js-follower"),
            asyncio.create_task(self.warnings.run(self._producer), name="warnings-flusher"),
        ]
        try:
            yield self
        finally:
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            await self.publisher.stop()
            os.close(lock_fd)

    async def _follow_registry(self, snapshot_file: Any) -> None:
        """Follow the registry topic; once read to its end, the view is exactly the topic's and
        is saved to the snapshot, and so is every later change."""
        seen: set[str] = set()
        caught_up = False

        def changed(name: str, record: ProjectRecord | None) -> None:
            seen.add(name)
            self.projects.apply(name, record)
            if caught_up:
                snapshot.save(snapshot_file, self.projects.records())

        def read_to_end() -> None:
            nonlocal caught_up
            caught_up = True
            self.projects.retain(seen)
            self.projects.mark_loaded()
            snapshot.save(snapshot_file, self.projects.records())

        await self._follow(topics.PROJECTS, changed, read_to_end, ProjectRecord.from_bytes)

    def _producer(self) -> Any:
        """The publisher's Kafka producer (None until it connected)."""
        return self.publisher.producer if self.publisher is not None else None

    def _forget_js(self, keys: list[str]) -> None:
        """Tombstone JS actions this gateway handed out, so that no other gateway does."""
        producer = self.publisher.producer if self.publisher is not None else None
        if producer is None:
            log.warning("Kafka is away: %d handed-out JS action(s) stay queued for the other "
                        "gateways", len(keys))
            return
        topic = self.settings.topic(topics.JS_ACTIONS)
        for key in keys:
            task = asyncio.ensure_future(producer.send(topic, None, key=key.encode()))
            task.add_done_callback(_log_failure)

    async def _follow(self, name: str, on_change: Any, on_caught_up: Any, decode: Any) -> None:
        await registry.follow_forever(self.bootstrap, self.settings.topic(name), on_change,
                                      on_caught_up, decode)

    def head_refused(self) -> None:
        """The HTTP protocol answered a request's head 431 (``gateway.http``): counted as
        the handler counts its own answers."""
        self.metrics.count("unknown", HEADERS_TOO_LARGE)

    def readiness(self) -> dict[str, bool]:
        return {
            "kafka": self.publisher is not None and self.publisher.connected,
            "registry": self.projects.loaded,
        }

    def _ops_app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            async with self.running():
                yield

        app = FastAPI(title="trackpipe gateway", lifespan=lifespan, docs_url=None,
                      redoc_url=None, openapi_url=None)

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/readyz")
        async def readyz() -> JSONResponse:
            checks = self.readiness()
            return JSONResponse({"ready": all(checks.values()), **checks},
                                status_code=200 if all(checks.values()) else 503)

        @app.get("/metrics")
        async def metrics() -> PlainTextResponse:
            return PlainTextResponse(self.metrics.render(),
                                     media_type="text/plain; version=0.0.4")

        return app


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("tombstoning a handed-out JS action failed: %s", task.exception())


def create_app() -> Gateway:
    """uvicorn factory: settings from the environment, read once here."""
    settings = Settings.from_env()
    return Gateway(settings, settings.bootstrap)
