"""The triggers service: reads processed actions, fires the rules they match, delivers.

Firing at most once per action and rule, across restarts, without holding every firing ever
made: a firing is first written, with everything its delivery needs, to the compacted
``firings`` topic, into the partition number of the action it came from; then the action's
offset is committed; only then does delivery start. A delivered (or dead-lettered) firing is
tombstoned. So after a crash or a rebalance the new owner of a partition reads that partition
of ``firings`` to its end: what is there is pending, is delivered now, and is what the
uncommitted actions it reads again would fire (they are skipped). The one window left is a
crash between a receiver's answer and the tombstone, which delivers that firing again with the
same ``X-Trackpipe-Delivery`` id, so receivers can drop it. An action a processor sends again
after its own crash (``processors.journal``) fires nothing new: recent firing ids are kept.

Webhooks are POSTed with a timeout and retried with backoff; a project's deliveries share a
semaphore, so a slow or failing receiver holds only its own project's slots. A webhook is never
sent unsigned: one whose project has no signing secret (registered before each had one) stays
pending in ``firings``, not in memory, and goes out signed once the registry gives the project
a secret. JavaScript actions are queued for the visitor in the compacted ``js-actions`` topic
that gateways follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, defaultdict
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, MessageSizeTooLargeError

from runtime import compacted, registry
from runtime.partition import read_partition
from runtime.settings import Settings
from schemas import topics
from schemas.deadletter import DeadLetter
from schemas.firing import Firing
from schemas.profile import shown
from schemas.project import ProjectRecord
from schemas.topics import MAX_MESSAGE_BYTES
from schemas.trigger import TriggerRule
from triggers import rules
from triggers.addresses import GuardedResolver

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 2.0
LOOKUP_PAUSE_S = 5.0
STOP_GRACE_S = 10.0
MAX_DELIVERIES = 10_000  # firings delivered (or waiting for a retry) at once, all projects
DEFERRED_EVERY_S = 5.0
MAX_ANSWER_BYTES = 64 * 1024  # what is read of a receiver's answer (its status is what counts)
RECENT_FIRINGS = 100_000  # a processor that crashed sends its last actions again: skip them
KAFKA_RETRY_S = 1.0


class _Left(Exception):
    """The firing's partition went to another owner (or the service stops): leave it pending."""


class _Unsigned(Exception):
    """The firing's project has no webhook signing secret: leave it pending until it has."""


class TriggerService:
    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.rules: dict[str, dict[str, TriggerRule]] = defaultdict(dict)
        self.projects: dict[str, ProjectRecord] = {}
        self.topic = {name: settings.topic(name) for name in (
            topics.ACTIONS, topics.FIRINGS, topics.JS_ACTIONS, topics.DEADLETTER,
            topics.TRIGGERS, topics.PROJECTS)}
        self.counts: dict[str, int] = defaultdict(int)
        self._deliveries: dict[int, dict[str, asyncio.Task[None]]] = defaultdict(dict)
        self._deferred: set[int] = set()  # partitions with firings left pending for room
        self._unsigned: dict[str, set[int]] = {}  # project: partitions holding its webhooks
        self._resumed: dict[int, set[str]] = defaultdict(set)
        self._fired: OrderedDict[str, None] = OrderedDict()  # recent firing ids, oldest first
        self._leaving: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self._loaded: dict[int, asyncio.Event] = {}  # set once a partition's pending are read
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._lookup_paused_until = 0.0
        self._producer: AIOKafkaProducer | None = None
        self._http: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    # -- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume actions until ``stop`` is set; then let deliveries in flight finish."""
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          enable_idempotence=True,
                                          max_request_size=MAX_MESSAGE_BYTES)
        await self._producer.start()
        self._resolver = GuardedResolver(self.settings.webhook_networks)
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self._resolver),
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_ms / 1000))
        rules_ready = asyncio.Event()
        projects_ready = asyncio.Event()
        followers = [
            asyncio.create_task(self._resume_deferred(), name="resume-deferred"),
            asyncio.create_task(self._follow(topics.TRIGGERS, self._apply_rule,
                                             TriggerRule.from_bytes, rules_ready)),
            asyncio.create_task(self._follow(topics.PROJECTS, self._apply_project,
                                             ProjectRecord.from_bytes, projects_ready)),
        ]
        try:
            await rules_ready.wait()  # firing against half the rules would miss firings
            await projects_ready.wait()
            await self._consume(stop)
        finally:
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            await self._http.close()
            await self._producer.stop()

    async def _follow(self, name: str, apply: Any, decode: Any, ready: asyncio.Event) -> None:
        await registry.follow_forever(self.bootstrap, self.topic[name], apply, ready.set, decode)

    def _apply_rule(self, key: str, rule: TriggerRule | None) -> None:
        project, name = key.split("\n", 1)
        compacted.apply(self.rules[project], name, rule)

    def _apply_project(self, name: str, record: ProjectRecord | None) -> None:
        compacted.apply(self.projects, name, record)
        if record is not None and record.webhook_secret and name in self._unsigned:
            log.warning("project %s has a webhook signing secret now: its held webhooks go "
                        "out, signed", name)
            self._deferred |= self._unsigned.pop(name)  # read again by _resume_deferred

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.settings.topic("triggers"),
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500)
        consumer.subscribe([self.topic[topics.ACTIONS]], listener=_Rebalance(self))
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    await self._handle(consumer, tp, records)
        finally:
            await self._finish(list(self._deliveries))
            await consumer.stop()

    # -- firing --------------------------------------------------------------------------------

    async def _handle(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                      records: list[Any]) -> None:
        loaded = self._loaded.get(tp.partition)
        if loaded is not None:  # aiokafka may hand out records while `resume` still reads
            await loaded.wait()
        firings: list[Firing] = []
        for record in records:
            try:
                action = json.loads(record.value)
                firings.extend(await self._fire(tp.partition, action))
            except Exception as exc:  # a record we cannot read must not stop the partition
                await self._send(topics.DEADLETTER, record.key, DeadLetter.unreadable_action(
                    exc, tp.topic, tp.partition, record.offset, record.key,
                    record.value).to_json())
        known = self._resumed[tp.partition]
        fresh = [f for f in firings if f.id not in known and f.id not in self._fired]
        for firing in fresh:
            self._fired[firing.id] = None
        while len(self._fired) > RECENT_FIRINGS:
            self._fired.popitem(last=False)
        await asyncio.gather(*(self._send(topics.FIRINGS, f.id.encode(), f.to_bytes(),
                                          tp.partition) for f in fresh))
        try:
            await consumer.commit({tp: records[-1].offset + 1})
        except (KafkaError, IllegalStateError) as exc:  # revoked meanwhile
            log.warning("commit of %s failed (%s); its firings are left to its next owner",
                        tp, exc)
            return
        for firing in fresh:
            self._start(firing)

    async def _fire(self, partition: int, action: dict[str, Any]) -> list[Firing]:
        if not rules.can_fire(action):
            return []
        candidates = [r for r in self.rules.get(action.get("project", ""), {}).values()
                      if r.event == action.get("event")]
        if not candidates:
            return []
        profile = await self._profile(action["project"], action.get("profile"))
        return [Firing(rules.firing_id(action["id"], rule.name), partition, rule, action,
                       profile).bounded()
                for rule in rules.matching(candidates, action, profile)]

    async def _profile(self, project: str, profile_id: str | None) -> dict[str, Any] | None:
        """The visitor's profile from the workers, following merges; None when no worker
        answers (the rule then sees only the properties this action sent)."""
        if not profile_id or time.monotonic() < self._lookup_paused_until:
            return None
        url = self.settings.worker_base_url + "/lookup/profile"
        try:
            for _ in range(8):
                async with self._http.get(  # type: ignore[union-attr]
                        url, params={"key": f"{project}\n{profile_id}"},
                        headers={"Authorization": f"Bearer {self.settings.worker_token}"},
                        timeout=aiohttp.ClientTimeout(total=LOOKUP_TIMEOUT_S)) as answer:
                    found = await answer.json(content_type=None) if answer.status == 200 else None
                if not found or not found.get("merged_into"):
                    break
                profile_id = found["merged_into"]
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("profile lookup at %s failed (%s); firing on the action's own "
                        "properties for %.0f s", url, exc, LOOKUP_PAUSE_S)
            self._lookup_paused_until = time.monotonic() + LOOKUP_PAUSE_S
            return None
        if not found:
            return None
        return shown(found)

    # -- delivering ----------------------------------------------------------------------------

    def _start(self, firing: Firing) -> None:
        """Start delivering a firing (it is in ``firings`` already). Past
        ``MAX_DELIVERIES`` in flight (receivers down for hours under heavy traffic) it is not
        started: it stays pending in ``firings``, and its partition is read again for it once
        deliveries have drained (``_resume_deferred``), so memory stays bounded."""
        running = self._deliveries[firing.partition]
        if firing.id in running:
            return
        if sum(len(tasks) for tasks in self._deliveries.values()) >= MAX_DELIVERIES:
            self._deferred.add(firing.partition)
            self.counts["deferred"] += 1
            return
        task = asyncio.create_task(self._deliver(firing), name=f"deliver {firing.id}")
        running[firing.id] = task
        task.add_done_callback(lambda _: running.pop(firing.id, None))

    async def _resume_deferred(self) -> None:
        """Every few seconds, the partitions whose firings were left pending for room: read
        them again, and start what is pending and not running."""
        while True:
            await asyncio.sleep(DEFERRED_EVERY_S)
            in_flight = sum(len(tasks) for tasks in self._deliveries.values())
            if not self._deferred or in_flight > MAX_DELIVERIES // 2:
                continue
            for partition in sorted(self._deferred):
                self._deferred.discard(partition)
                if partition not in self._loaded:
                    continue  # no longer ours: its next owner reads it
                for firing in await self._pending(partition):
                    self._start(firing)

    async def _deliver(self, firing: Firing) -> None:
        rule = firing.rule
        try:
            outcome = await (self._queue_js(firing) if rule.js is not None
                             else self._post(firing))
        except _Left:
            return
        except _Unsigned:
            self._hold_unsigned(firing)
            return
        if outcome is not None:
            self.counts["dead"] += 1
            await self._send(topics.DEADLETTER, firing.id.encode(),
                             DeadLetter.undelivered_firing(
                                 firing, outcome, self.topic[topics.FIRINGS]).to_json())
        await self._send(topics.FIRINGS, firing.id.encode(), None, firing.partition)

    async def _post(self, firing: Firing) -> str | None:
        """Deliver a webhook; None when delivered, else why it was given up."""
        rule = firing.rule
        body = firing.body()
        limit = self._limits.setdefault(
            rule.project, asyncio.Semaphore(self.settings.webhook_concurrency))
        leaving = self._leaving[firing.partition]
        attempt = 0
        while True:
            attempt += 1
            project = self.projects.get(rule.project)
            secret = project.webhook_secret if project is not None else None
            headers = rules.webhook_headers(secret, firing.id, rule.name, body, int(time.time()))
            if headers is None:
                raise _Unsigned()
            status: int | None = None
            refused = await self._refused(rule.webhook)
            if refused is not None:
                return refused  # not a receiver's failure: no retry
            async with limit:
                if leaving.is_set():
                    raise _Left()
                try:
                    async with self._http.post(  # type: ignore[union-attr]
                            rule.webhook, data=body, headers=headers,
                            allow_redirects=False) as answer:
                        status = answer.status
                        await answer.content.read(MAX_ANSWER_BYTES)
                    error = None if status < 300 else f"HTTP {status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if error is None:
                self.counts["delivered"] += 1
                return None
            self.counts["failed attempts"] += 1
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

    def _hold_unsigned(self, firing: Firing) -> None:
        """A webhook is never sent unsigned: the firing stays pending in ``firings`` (not in
        memory), and its partition is read again once the project has a secret."""
        project = firing.rule.project
        if project not in self._unsigned:
            log.warning("project %s has no webhook signing secret (it was registered before "
                        "each project had one, or is not registered): its webhooks are held, "
                        "not sent unsigned, until it has one; `trackpipe projects set %s "
                        "--rotate-webhook-secret` makes one and prints it", project, project)
        self._unsigned.setdefault(project, set()).add(firing.partition)
        self.counts["held unsigned"] += 1

    async def _refused(self, url: str) -> str | None:
        """Why a webhook may not be called (every address its host resolves to is loopback,
        private, link-local... and not allowed), or None. The connection itself goes through
        ``GuardedResolver``, so a name that resolves elsewhere by then is refused too."""
        host = urlsplit(url).hostname or ""
        try:
            addresses = await self._resolver.addresses(host)  # type: ignore[union-attr]
        except OSError as exc:
            return None if not host else f"{host} does not resolve: {exc}"  # retried later
        if not addresses:
            return (f"{host} resolves only to addresses webhooks may not reach (loopback, "
                    "private, link-local); TRACKPIPE_WEBHOOK_ALLOW_NETWORKS allows a network")
        return None

    async def _queue_js(self, firing: Firing) -> str | None:
        visitor_key = firing.action.get("visitor_key")
        if firing.action.get("cookie_assigned") or not visitor_key:
            return "the visitor sent no cookie or identifier, so no later request can take it"
        key = f"{firing.rule.project}\n{visitor_key}\n{firing.id}"
        await self._send(topics.JS_ACTIONS, key.encode(),
                         firing.rule.js.encode())  # type: ignore[union-attr]
        self.counts["queued js"] += 1
        return None

    async def _send(self, name: str, key: bytes | None, value: bytes | None,
                    partition: int | None = None) -> None:
        """Write one record, acknowledged by all in-sync replicas; Kafka being away is waited
        out, never a lost firing."""
        while True:
            try:
                await self._producer.send_and_wait(  # type: ignore[union-attr]
                    self.topic[name], value, key=key, partition=partition)
                return
            except MessageSizeTooLargeError:  # never sendable: retrying would stop everything
                log.error("a %d-byte record for %s is more than Kafka takes; not written",
                          len(value or b""), self.topic[name])
                self.counts["too large"] += 1
                return
            except KafkaError as exc:
                log.warning("writing to %s failed (%s); retrying", self.topic[name], exc)
                await asyncio.sleep(KAFKA_RETRY_S)

    # -- partitions coming and going -----------------------------------------------------------

    async def resume(self, partitions: list[int]) -> None:
        """Deliver what ``firings`` holds for newly assigned partitions."""
        for partition in partitions:
            self._loaded[partition] = asyncio.Event()
        for partition in partitions:
            pending = await self._pending(partition)
            self._resumed[partition] = {firing.id for firing in pending}
            for firing in pending:
                self._start(firing)
            self._loaded[partition].set()

    async def _pending(self, partition: int) -> list[Firing]:
        pending: dict[str, bytes] = {}
        async for record in read_partition(self.bootstrap, self.topic[topics.FIRINGS],
                                           partition):
            compacted.apply(pending, record.key.decode(), record.value)
        if pending:
            log.info("partition %s: resuming %d pending firing(s)", partition, len(pending))
        return [Firing.from_bytes(key, partition, value) for key, value in pending.items()]

    async def _finish(self, partitions: list[int]) -> None:
        """Let webhook requests in flight end and be recorded (a cut-off one would be sent
        again by the next owner); deliveries waiting for their turn or a retry stay pending."""
        tasks = []
        for partition in partitions:
            self._leaving[partition].set()
            if partition in self._loaded:  # a batch waiting for it goes on, and its commit fails
                self._loaded[partition].set()
            tasks.extend(self._deliveries[partition].values())
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S + self.settings.webhook_timeout_ms
                               / 1000)
        for task in tasks:
            task.cancel()
        for partition in partitions:
            for table in (self._deliveries, self._resumed, self._leaving, self._loaded):
                table.pop(partition, None)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: TriggerService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.service._finish([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.service.resume([tp.partition for tp in assigned])
