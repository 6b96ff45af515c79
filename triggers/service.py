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

This module holds that order and the wiring; each part decides one thing:
``triggers.definitions`` (the rules and projects followed), ``triggers.actions`` (what an
action fires), ``triggers.pending`` (the owned partitions of ``firings``, what runs, what is
read again), ``triggers.delivery`` (a firing to its end: retries, dead letter, tombstone),
``triggers.held`` (webhooks held for want of a signing secret), ``triggers.writer`` (Kafka
out) and ``triggers.rules`` (the pure rules).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from runtime.settings import Settings
from schemas import topics
from schemas.deadletter import DeadLetter
from schemas.firing import Firing
from triggers.actions import ActionReader
from triggers.addresses import WebClient
from triggers.definitions import Definitions
from triggers.delivery import Delivery
from triggers.held import HeldWebhooks
from triggers.metrics import TriggersMetrics, serve
from triggers.pending import PendingFirings, read_pending
from triggers.warned import TriggerWarnings
from triggers.writer import Writer

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0


class TriggerService:
    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.topic = {name: settings.topic(name) for name in (
            topics.ACTIONS, topics.FIRINGS, topics.JS_ACTIONS, topics.DEADLETTER,
            topics.TRIGGERS, topics.PROJECTS, topics.WARNINGS)}
        self.counts: dict[str, int] = defaultdict(int)
        self.metrics = TriggersMetrics(self.counts)
        self.held = HeldWebhooks(self.counts)
        self.definitions = Definitions(on_secret=self._secret_given)
        self.writer = Writer(bootstrap, self.topic, self.counts)
        self.warnings = TriggerWarnings(self.writer, settings.raw_partitions,
                                        self.metrics.warnings)
        self.web = WebClient(settings.webhook_networks, settings.webhook_timeout_ms / 1000)
        self.actions = ActionReader(settings, self.definitions, self.web)
        delivery = Delivery(settings, self.web, self.writer, self.definitions.webhook_secret,
                            self.held.hold, self.counts, self.warnings, self.metrics.failures)
        self.pending = PendingFirings(
            partial(read_pending, bootstrap, self.topic[topics.FIRINGS]), delivery.deliver,
            self.counts, grace_s=STOP_GRACE_S + settings.webhook_timeout_ms / 1000)

    def _secret_given(self, project: str) -> None:
        self.pending.reread(self.held.release(project))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume actions until ``stop`` is set; then let deliveries in flight finish."""
        await self.writer.start()
        await self.web.start()
        page = await serve(self.metrics, self.settings.triggers_web_host,
                           self.settings.triggers_web_port)
        if page is None:
            log.warning("could not serve /metrics on %s:%s (taken?): running without them",
                        self.settings.triggers_web_host, self.settings.triggers_web_port)
        followers = [
            asyncio.create_task(self.pending.reread_deferred(), name="resume-deferred"),
            asyncio.create_task(self.definitions.follow(
                self.bootstrap, self.topic[topics.TRIGGERS], self.topic[topics.PROJECTS]),
                name="definitions"),
        ]
        try:
            await self.definitions.ready.wait()
            await self._consume(stop)
        finally:
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            await self.web.close()
            await self.writer.stop()
            if page is not None:
                await page.cleanup()

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.settings.topic("triggers"),
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500)
        consumer.subscribe([self.topic[topics.ACTIONS]], listener=_Rebalance(self.pending))
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    await self._handle(consumer, tp, records)
        finally:
            await self.pending.finish(self.pending.partitions)
            await consumer.stop()

    async def _handle(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                      records: list[Any]) -> None:
        """A batch of one partition's actions: fire, write the fresh firings, commit, and
        only then start them."""
        await self.pending.loaded(tp.partition)
        firings: list[Firing] = []
        for record in records:
            try:
                action = json.loads(record.value)
                firings.extend(await self.actions.firings(tp.partition, action))
            except Exception as exc:  # a record we cannot read must not stop the partition
                self.counts["dead"] += 1
                await self.writer.send(topics.DEADLETTER, record.key,
                                       DeadLetter.unreadable_action(
                                           exc, tp.topic, tp.partition, record.offset,
                                           record.key, record.value).to_json())
                await self.warnings.unreadable(record.key, record.value, repr(exc))
        fresh = self.pending.fresh(tp.partition, firings)
        await asyncio.gather(*(self.writer.send(topics.FIRINGS, f.id.encode(), f.to_bytes(),
                                                tp.partition) for f in fresh))
        try:
            await consumer.commit({tp: records[-1].offset + 1})
        except (KafkaError, IllegalStateError) as exc:  # revoked meanwhile
            log.warning("commit of %s failed (%s); its firings are left to its next owner",
                        tp, exc)
            self.pending.not_committed(tp.partition, fresh)
            return
        self.pending.committed(tp.partition, fresh)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, pending: PendingFirings) -> None:
        self.pending = pending

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.pending.finish([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.pending.resume([tp.partition for tp in assigned])
