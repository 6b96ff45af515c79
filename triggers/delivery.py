"""Delivering one firing, to its end: delivered (a webhook answered 2xx, or a JS action
queued for the visitor) or given up (dead-lettered), and then tombstoned in ``firings``.

Webhooks are POSTed signed, with a timeout, and retried with backoff while the failure may
pass (``triggers.rules``: retry policy); a project's deliveries share a semaphore, so a slow
or failing receiver holds only its own project's slots. A firing is not finished, and stays
pending in ``firings``, when its partition goes to another owner meanwhile (that owner
delivers it), or when its project has no signing secret (``triggers.held``). JavaScript
actions are queued for the visitor in the compacted ``js-actions`` topic that gateways follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, MutableMapping

import aiohttp

from runtime.settings import Settings
from schemas import topics
from schemas.deadletter import DeadLetter
from schemas.firing import Firing
from triggers import rules
from triggers.addresses import WebClient
from triggers.warned import TriggerWarnings
from triggers.writer import Writer

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 64 * 1024  # what is read of a receiver's answer (its status is what counts)


class _Left(Exception):
    """The firing's partition went to another owner (or the service stops): leave it pending."""


class _Unsigned(Exception):
    """The firing's project has no webhook signing secret: leave it pending until it has."""


class Delivery:
    def __init__(self, settings: Settings, web: WebClient, writer: Writer,
                 webhook_secret: Callable[[str], str | None], hold: Callable[[Firing], None],
                 counts: MutableMapping[str, int], warnings: TriggerWarnings | None = None,
                 failures: MutableMapping[str, int] | None = None) -> None:
        """``webhook_secret``: a project's signing secret (None: none); ``hold``: keep a
        firing whose project has none pending until it has; ``warnings``: where a firing
        given up is also an ingestion warning; ``failures``: failed attempts by project."""
        self.settings = settings
        self.web = web
        self.writer = writer
        self.webhook_secret = webhook_secret
        self.hold = hold
        self.counts = counts
        self.warnings = warnings
        self.failures: MutableMapping[str, int] = failures if failures is not None else {}
        self._limits: dict[str, asyncio.Semaphore] = {}

    async def deliver(self, firing: Firing, leaving: asyncio.Event) -> bool:
        """Deliver ``firing`` until it is finished; True once it is (and tombstoned), False
        when it stays pending in ``firings`` (``leaving`` was set, or it is held)."""
        try:
            outcome = await (self._queue_js(firing) if firing.rule.js is not None
                             else self._post(firing, leaving))
        except _Left:
            return False
        except _Unsigned:
            self.hold(firing)
            return False
        if outcome is not None:
            self.counts["dead"] += 1
            await self.writer.send(topics.DEADLETTER, firing.id.encode(),
                                   DeadLetter.undelivered_firing(
                                       firing, outcome,
                                       self.writer.topics[topics.FIRINGS]).to_json())
            if self.warnings is not None:
                await self.warnings.given_up(firing, outcome)
        await self.writer.send(topics.FIRINGS, firing.id.encode(), None, firing.partition)
        return True

    async def _post(self, firing: Firing, leaving: asyncio.Event) -> str | None:
        """Deliver a webhook; None when delivered, else why it was given up."""
        rule = firing.rule
        body = firing.body()
        limit = self._limits.setdefault(
            rule.project, asyncio.Semaphore(self.settings.webhook_concurrency))
        attempt = 0
        while True:
            attempt += 1
            headers = rules.webhook_headers(self.webhook_secret(rule.project), firing.id,
                                            rule.name, body, int(time.time()))
            if headers is None:
                raise _Unsigned()
            status: int | None = None
            refused = await self.web.refused(rule.webhook)
            if refused is not None:
                self._failed(rule.project)
                return refused  # not a receiver's failure: no retry
            async with limit:
                if leaving.is_set():
                    raise _Left()
                try:
                    async with self.web.session.post(rule.webhook, data=body, headers=headers,
                                                     allow_redirects=False) as answer:
                        status = answer.status
                        await answer.content.read(MAX_ANSWER_BYTES)
                    error = None if status < 300 else f"HTTP {status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if error is None:
                self.counts["delivered"] += 1
                return None
            self._failed(rule.project)
            delay_s = rules.retry_delay(attempt, self.settings.webhook_attempts,
                                        self.settings.webhook_backoff_ms / 1000)
            if delay_s is None or not rules.retryable(status):
                return f"{error} after {attempt} attempt(s)"
            log.info("webhook %s for %s: %s; retrying in %.1f s", rule.webhook, firing.id,
                     error, delay_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leaving.wait(), delay_s)
            if leaving.is_set():
                raise _Left()

    def _failed(self, project: str) -> None:
        self.counts["failed attempts"] += 1
        self.failures[project] = self.failures.get(project, 0) + 1

    async def _queue_js(self, firing: Firing) -> str | None:
        """Queue a JS action for the visitor's next script response; None when queued, else
        why it cannot be."""
        visitor_key = firing.action.get("visitor_key")
        if firing.action.get("cookie_assigned") or not visitor_key:
            return "the visitor sent no cookie or identifier, so no later request can take it"
        key = f"{firing.rule.project}\n{visitor_key}\n{firing.id}"
        await self.writer.send(topics.JS_ACTIONS, key.encode(),
                               firing.rule.js.encode())  # type: ignore[union-attr]
        self.counts["queued js"] += 1
        return None
