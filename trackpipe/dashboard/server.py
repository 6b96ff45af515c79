"""The dashboard process: a collector that scrapes every gateway, worker and triggers service
once a second and tails the actions and warnings topics, and a small FastAPI app that serves
the page and its JSON.

It keeps what the page draws: the last ``HISTORY`` seconds of rates (``/api/history``, so that
a page opened now starts with the last ten minutes instead of an empty chart), the scrapes of
the last minute (what went wrong in it: ``summary.last_minute``), the latest actions and the
latest ingestion warnings (read back from the topic's end when it starts, then followed).

Targets are base URLs; a host name is resolved to all its addresses on every round, so with
compose (where a service name resolves to each replica) scaling a role needs no change here.
Bound to 127.0.0.1 by default; anywhere else the settings insist on a token, which every
request must carry (``?token=`` for the page, which hands it on to its API calls).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import json
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from runtime import prometheus as prom
from runtime.settings import Settings
from schemas import topics
from schemas.endpoints import Endpoint
from schemas.warning import IngestionWarning
from trackpipe.dashboard.summary import last_minute, merged, summarize

log = logging.getLogger(__name__)

SCRAPE_EVERY_S = 1.0
LATEST = 20
HISTORY = 600  # seconds of rates kept for the chart: ten minutes
MINUTE_S = 60.0
PAGE = Path(__file__).with_name("page.html")


class Collector:
    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.latest: deque[dict[str, Any]] = deque(maxlen=LATEST)
        self.warnings: list[dict[str, Any]] = []  # the LATEST newest, oldest first
        self.summary: dict[str, Any] | None = None
        self.history: deque[dict[str, float]] = deque(maxlen=HISTORY)  # one a round
        self._rounds: deque[tuple[float, prom.Series]] = deque()  # the last minute's scrapes

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._scrape_forever()),
                 asyncio.create_task(self._tail_actions()),
                 asyncio.create_task(self._tail_warnings())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _scrape_forever(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                started = time.monotonic()
                try:
                    await self.scrape(http)
                except Exception:  # a bad round must not end the dashboard
                    log.exception("scrape round failed")
                await asyncio.sleep(max(0.0, SCRAPE_EVERY_S - (time.monotonic() - started)))

    async def scrape(self, http: aiohttp.ClientSession) -> None:
        urls = [url for target in self.settings.scrape_targets for url in await _expand(target)]
        answers = await asyncio.gather(*(_fetch(http, url) for url in urls))
        series = [s for s in answers if s is not None]
        processes = {"gateways": sum(1 for s in series if _has(s, "trackpipe_gateway_")),
                     "workers": sum(1 for s in series if _has(s, "trackpipe_worker_")),
                     "triggers": sum(1 for s in series if _has(s, "trackpipe_triggers_")),
                     "unreachable": answers.count(None)}
        now, current = time.monotonic(), merged(series)
        before_at, before = self._rounds[-1] if self._rounds else (now - SCRAPE_EVERY_S, {})
        summary = summarize(before, current, now - before_at, processes)
        while self._rounds and now - self._rounds[0][0] > MINUTE_S:
            self._rounds.popleft()
        summary["last_minute"] = last_minute(self._rounds[0][1] if self._rounds else current,
                                             current)
        self._rounds.append((now, current))
        self.summary = summary
        self.history.append({"t": int(time.time() * 1000),
                             "events_per_s": summary["events_per_s"]})

    async def _tail_actions(self) -> None:
        """The newest actions, read from the end of the actions topic."""
        await self._follow(topics.ACTIONS, "latest", self._acted)

    def _acted(self, value: bytes) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            action = json.loads(value)
            if action.get("type") == Endpoint.CE:
                self.latest.appendleft({k: action.get(k) for k in (
                    "received_ms", "project", "event", "profile", "visitor_key", "id")})

    async def _tail_warnings(self) -> None:
        """The latest ingestion warnings: the last ``LATEST`` of each partition when it
        starts, then every new one (one consumer: nothing written between is missed)."""

        async def read_back(consumer: AIOKafkaConsumer) -> None:
            held = list(consumer.assignment())
            self.warnings.clear()  # read back again after a retry
            firsts = await consumer.beginning_offsets(held)
            for tp, end in (await consumer.end_offsets(held)).items():
                consumer.seek(tp, max(firsts[tp], end - LATEST))

        await self._follow(topics.WARNINGS, "earliest", self.warned, read_back)

    async def _follow(self, name: str, reset: str, handle: Callable[[bytes], None],
                      begin: Callable[[AIOKafkaConsumer], Awaitable[None]] | None = None,
                      ) -> None:
        """Every new record of topic ``name`` to ``handle``, with no consumer group (without
        one, a consumer given its topic holds every partition once started), after ``begin``
        has placed the consumer; started again after an error."""
        while True:
            consumer = AIOKafkaConsumer(self.settings.topic(name),
                                        bootstrap_servers=self.bootstrap, group_id=None,
                                        enable_auto_commit=False, auto_offset_reset=reset)
            try:
                await consumer.start()
                if begin is not None:
                    await begin(consumer)
                async for message in consumer:
                    handle(message.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("tailing the %s topic: %s; retrying", name, exc)
                await asyncio.sleep(2)
            finally:
                await consumer.stop()

    def warned(self, value: bytes) -> None:
        """Keep a warning among the ``LATEST`` newest (partitions arrive interleaved)."""
        try:
            warning = IngestionWarning.from_json(value).shown()
        except msgspec.DecodeError:  # not a warning this version can read: nothing to show
            return
        bisect.insort(self.warnings, warning, key=lambda w: w["at_ms"])
        del self.warnings[:-LATEST]

    def latest_warnings(self) -> list[dict[str, Any]]:
        return self.warnings[::-1]


def _has(series: prom.Series, prefix: str) -> bool:
    return any(name.startswith(prefix) for name, _ in series)


async def _expand(target: str) -> list[str]:
    """Every address a target's host name resolves to, as a /metrics URL."""
    parts = urlsplit(target.rstrip("/"))
    host, port = parts.hostname or "", parts.port or 80
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        return [f"{parts.scheme}://{parts.netloc}{parts.path}/metrics"]
    addresses = sorted({info[4][0] for info in infos})
    return [f"{parts.scheme}://{f'[{a}]' if ':' in a else a}:{port}{parts.path}/metrics"
            for a in addresses]


async def _fetch(http: aiohttp.ClientSession, url: str) -> prom.Series | None:
    try:
        async with http.get(url) as answer:
            if answer.status != 200:
                return None
            return prom.parse(await answer.text())
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
        return None


def create_app(settings: Settings, bootstrap: str) -> FastAPI:
    collector = Collector(settings, bootstrap)
    token = settings.admin_token

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(collector.run())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    app = FastAPI(title="trackpipe dashboard", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Any:
        if token:
            given = request.query_params.get("token") or request.headers.get(
                "authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "a valid token is required"}, status_code=401)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text()

    @app.get("/api/summary")
    async def summary() -> JSONResponse:
        return JSONResponse({"summary": collector.summary, "latest": list(collector.latest),
                             "warnings": collector.latest_warnings(),
                             "targets": list(settings.scrape_targets)},
                            headers={"cache-control": "no-store"})

    @app.get("/api/history")
    async def history() -> JSONResponse:
        return JSONResponse({"history": list(collector.history)},
                            headers={"cache-control": "no-store"})

    return app
