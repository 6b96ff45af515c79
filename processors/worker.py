"""One processor worker: the faust app, its tables, and how the stages are wired to them.

faust-streaming owns what a stream processor needs and is hard to get right: consumer-group
membership and rebalancing, the tables and their recovery from changelogs, timers, and the
routing of a lookup to the worker that owns a key. The stages (``processors.stages``) own the
decisions; this module only moves messages between the two:

- ``visitors`` reads the raw topic together with ``ticks`` and ``rebinds``. They have the
  same partition count and keys, so a partition's raw envelopes, its clock and the identity
  answers for its visitors arrive in one ordered stream on one worker, and the tables the
  stage writes are co-partitioned with it;
- ``identities`` reads ``links``, ``profiles`` reads ``profile-updates``, ``quotas`` reads
  ``quota-counts``.

Every agent runs ``concurrency=1`` with ``at_least_once`` (faust loses data with more, faust
issue 606); the agents are what faust subscribes and assigns by, and faust's consumer hands
each of their messages, an envelope of many records, straight to ``_handle``, in order and past
faust's per-event machinery (``processors.direct``). What the stages send is gathered in
``processors.outbound`` and sent every ``FLUSH_INTERVAL_S``; before faust commits offsets
(it awaits its producer's ``flush``, which is replaced for that) the checkpoint makes the
stages' work durable in the order that survives a crash (``processors.checkpoint``), so a
committed offset never runs ahead of the state it produced, nor a stored state ahead of the
outputs it gates.

A record's own fault is a dead letter and the stream goes on (a raw record's, or an internal
envelope item's, alone: ``processors.guard.each_item``); transient I/O (Kafka, the disk)
is retried with backoff, holding the partition, because dead-lettering a good record would
take it out of the day logs. Timers cannot write tables in faust, so the clock is a tick per
owned partition sent into ``ticks``; the visitors stage closes visits when it arrives in its
stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP

from processors import direct
from processors.faustapp import RAW, RocksStore, make_app, make_tables
from processors.guard import each_item, guarded
from processors.metrics import lag_seconds
from processors.outbound import KafkaTransport
from processors.ownership import Ownership
from processors.pipeline import Stages
from processors.state import TableState
from runtime import registry
from runtime.partition import committed_offsets, read_partition
from runtime.settings import Settings
from schemas import topics
from schemas.deadletter import DeadLetter

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 1.0
FLUSH_INTERVAL_S = 0.05
BACKLOG_MS = 2000  # a partition whose newest record read is older than this, with more to read


class Worker:
    """The faust app of one worker process; ``app`` is what faust's ``Worker`` runs."""

    def __init__(self, settings: Settings, bootstrap: str, web_port: int) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.raw_topic = settings.topic(topics.RAW)
        (settings.data_dir / "processors").mkdir(parents=True, exist_ok=True)
        self.app = make_app(settings, bootstrap, web_port)
        self.faust_tables = make_tables(self.app, settings)
        self.stages = self._stages()
        # A partition's files and state are written only under its lock (issue 21): a worker
        # the group dropped without its knowing may still be handling it.
        self.ownership = Ownership(self.stages.visitors.journal.root,
                                   taken=self.stages.visitors.forget)
        self.handlers = self._handlers()
        self._next_offsets: dict[tuple[str, int], int] = {}
        # No raw record before the registry is read: a project's --ip-anonymize must hold for
        # the first record after a start.
        self.registry_read = asyncio.Event()
        self._agents()
        self.app.task(self._follow_registry)
        self._add_pages()
        self.app.timer(TICK_INTERVAL_S)(self._send_ticks)
        self.app.timer(FLUSH_INTERVAL_S)(self._flush)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_rebalance_complete.connect(self._on_rebalanced)
        self._commit_with_state()

    def _stages(self) -> Stages:
        """The stages over faust's RocksDB stores, sending through faust's producer."""
        stores = {name: RocksStore(table.data) for name, table in self.faust_tables.items()}
        changelogs = {name: table.changelog_topic.get_topic_name()
                      for name, table in self.faust_tables.items()}
        by_changelog = {changelogs[name]: store for name, store in stores.items()}

        def persisted(topic: str, partition: int, offset: int) -> None:
            store = by_changelog.get(topic)
            if store is not None:
                store.persisted(TP(topic, partition), offset)

        producer = self.app.producer
        deliver = producer.flush  # faust's own, before _commit_with_state replaces it
        transport = KafkaTransport(lambda: producer._ensure_producer(),
                                   lambda *sent: self.stages.checkpoint.delivered(*sent))
        return Stages(self.settings, transport, stores, changelogs, deliver, persisted)

    def _handlers(self) -> dict[str, Callable[[Any], Any]]:
        """What handles a message of each topic but raw (``_raw``); the internal topics'
        handlers first fetch what the stream skipped (``_in_order``)."""
        t, stages = self.settings.topic, self.stages
        self.gap_checked = frozenset(t(name) for name in (
            topics.REBINDS, topics.LINKS, topics.PROFILE_UPDATES, topics.QUOTA_COUNTS))
        handlers: dict[str, Callable[[Any], Any]] = {
            t(topics.TICKS): self._tick,
            t(topics.REBINDS): self._each_item(stages.visitors.handle_rebind),
            t(topics.LINKS): self._each_item(stages.identities.handle_link),
            t(topics.PROFILE_UPDATES): self._each_item(stages.profiles.handle_change),
            t(topics.QUOTA_COUNTS): self._each_item(stages.quotas.handle_count),
        }
        return {topic: self._in_order(handle) if topic in self.gap_checked else handle
                for topic, handle in handlers.items()}

    def _agents(self) -> None:
        """One agent per stage, ``concurrency=1``: the visitors agent reads raw, ticks and
        rebinds in one ordered stream (co-partitioned topics). The agents are what faust
        subscribes and assigns by; the consumer hands their messages to ``_handle`` before any
        reaches a stream (``processors.direct``), and a stream would handle one the same way."""
        t, app = self.settings.topic, self.app
        source = app.topic(self.raw_topic, t(topics.TICKS), t(topics.REBINDS), **RAW)
        app.agent(source, name="visitors", concurrency=1)(self._agent)
        for topic, name in ((topics.LINKS, "identities"), (topics.PROFILE_UPDATES, "profiles"),
                            (topics.QUOTA_COUNTS, "quotas")):
            app.agent(app.topic(t(topic), **RAW), name=name, concurrency=1)(self._agent)
        direct.install(app, self._handle, {self.raw_topic, *self.handlers})

    # -- handling ------------------------------------------------------------------------------

    async def _agent(self, stream: Any) -> None:
        async for event in stream.events():
            await self._handle(event.message)

    async def _handle(self, message: Any) -> None:
        if await self.ownership.own(message.partition):
            await self._guarded(self.handlers.get(message.topic, self._raw), message)
        # else: not this worker's partition (any more): its owner handles it

    async def _raw(self, message: Any) -> None:
        """Handle a raw envelope, first any envelopes of its partition the stream skipped.

        faust can hand an agent a record past offsets it never delivered after a rebalance
        (faust issues 216 and 221) and then commit past them. The journal's position says
        which offsets were handled, so a gap is fetched directly from Kafka and handled in
        order before this envelope: nothing is lost whatever the consumer did.
        """
        if not self.registry_read.is_set():
            await self.registry_read.wait()
        handled = self.stages.visitors.position(message.partition)
        if handled >= 0 and message.offset > handled + 1:
            await self._fetch_skipped(message, handled + 1, self._handle_raw)
        self._handle_raw(message)

    def _each_item(self, handle: Callable[[int, Any], None]) -> Callable[[Any], None]:
        return lambda message: each_item(message, handle, self._dead_letter)

    def _in_order(self, handle: Callable[[Any], None]) -> Callable[[Any], Any]:
        """``handle`` for a message of an internal topic, first handling any offsets the
        stream skipped since the group's commit (or since the last one handled): the guard
        of ``_raw`` for topics without a journal. A fold skipped would be lost for good."""
        async def in_order(message: Any) -> None:
            tp = (message.topic, message.partition)
            expected = self._next_offsets.get(tp)
            if expected is not None and message.offset > expected:
                await self._fetch_skipped(message, expected, handle)
            self._next_offsets[tp] = max(expected or 0, message.offset + 1)
            handle(message)

        return in_order

    async def _fetch_skipped(self, message: Any, start: int, handle: Callable[[Any], Any]
                             ) -> None:
        log.warning("%s[%s]: offsets %s-%s were skipped by the stream; fetching them",
                    message.topic, message.partition, start, message.offset - 1)
        self.stages.metrics.gaps += message.offset - start
        async for missed in read_partition(self.bootstrap, message.topic, message.partition,
                                           start, message.offset):
            await self._guarded(handle, missed)

    def _handle_raw(self, message: Any) -> None:
        self.stages.visitors.handle_raw(message.partition, message.offset, message.value)

    async def _guarded(self, handle: Callable[[Any], Any], message: Any) -> None:
        await guarded(handle, message, self._dead_letter)

    def _dead_letter(self, message: Any, exc: BaseException, index: int | None = None,
                     item: bytes | None = None) -> None:
        """The message (or, with ``index``, its item ``item``) to the dead-letter topic."""
        value = message.value if index is None else item
        self.stages.metrics.dead_letters += 1
        self.stages.outbound.message(self.settings.topic(topics.DEADLETTER), message.key,
                                     DeadLetter.for_record(
                                         exc, message.topic, message.partition,
                                         message.offset, message.key, value, index).to_json())
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        for warned in self.stages.visitors.warner.warn_dead_message(
                value, exc, where if index is None else f"{where}#{index}",
                int(time.time() * 1000), raw=message.topic == self.raw_topic and index is None):
            self.stages.outbound.message(*warned)

    def _tick(self, message: Any) -> None:
        now_ms = int(message.value)
        self.stages.visitors.handle_tick(message.partition, now_ms,
                                         self._catching_up(message.partition, now_ms))

    # -- timers and hooks ----------------------------------------------------------------------

    async def _send_ticks(self) -> None:
        now = str(int(time.time() * 1000)).encode()
        try:
            for tp in self.app.assignor.assigned_actives():
                if tp.topic == self.raw_topic:
                    self.stages.outbound.message(self.settings.topic(topics.TICKS), b"tick", now,
                                                 tp.partition)
        except Exception:  # a missed tick only delays closing visits; never crash the worker
            log.exception("could not send ticks")

    async def _flush(self) -> None:
        if self.stages.outbound.pending:
            await self.stages.outbound.flush()

    def _commit_with_state(self) -> None:
        """Run the checkpoint before every offset commit: faust awaits its producer's
        ``flush`` right before it commits, and the checkpoint awaits the real one itself."""
        self.app.producer.flush = self.stages.commit  # type: ignore[method-assign]

    async def _on_rebalanced(self, sender: Any, **kwargs: Any) -> None:
        """Recovery wrote the tables' stores from their changelogs: what the tables cached
        before may be older."""
        for table in self.stages.tables.values():
            table.forget()

    async def _on_revoked(self, sender: Any, revoked: Any, **kwargs: Any) -> None:
        """faust handled the messages in hand and flushed the commit: the locks go."""
        self.ownership.revoked()

    async def _on_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        # Another worker may have written these partitions' logs and journal meanwhile.
        partitions = sorted(tp.partition for tp in assigned if tp.topic == self.raw_topic)
        log.info("assigned raw partitions %s", partitions)
        # taken at the first message; raw's partitions only (faust's leader topic has a
        # partition 0 of its own, held by one worker)
        self.ownership.assigned(partitions)
        self.stages.visitors.forget(sorted({tp.partition for tp in assigned}))
        # Where each internal partition resumes: a first message past it is a skip (_in_order).
        self._next_offsets = {}
        checked = [TopicPartition(tp.topic, tp.partition) for tp in assigned
                   if tp.topic in self.gap_checked]
        try:
            committed = await committed_offsets(self.bootstrap, self.app.conf.id, checked)
        except KafkaError as exc:  # no check until the next assignment; nothing else changes
            log.warning("could not read the committed offsets: %r", exc)
            return
        for tp, offset in committed.items():
            self._next_offsets.setdefault((tp.topic, tp.partition), offset)

    async def _follow_registry(self) -> None:
        """Follow the registry for each project's quota (the quotas stage republishes a
        project's state when its quota changes, so raising a quota lifts the 402 at once), its
        retention (applied at the next tick) and its address settings (``--ip-anonymize``,
        ``--no-location``: from the next envelope on)."""
        def changed(name: str, record: Any) -> None:
            self.stages.quotas.quota_changed(name, record.quota if record is not None else None)
            self.stages.visitors.retention_changed(
                name, record.retention_days if record is not None else None)
            self.stages.enrichment.project_changed(name, record)

        await registry.follow_forever(self.bootstrap, self.settings.topic(topics.PROJECTS),
                                      changed, self.registry_read.set)

    # -- lag and backlog -----------------------------------------------------------------------

    def _catching_up(self, partition: int, now_ms: int) -> bool:
        """True while a partition reads a backlog (after downtime or a rebalance): envelopes
        not yet read, and the newest record read was received well before now. Closing visits
        by the clock then would end visits that the backlog extends."""
        newest = self.stages.visitors.stream_ms.get(partition)
        lag = self._lag_of(TopicPartition(self.raw_topic, partition))
        return bool(lag) and (newest is None or now_ms - newest > BACKLOG_MS)

    def lag(self) -> dict[int, int]:
        """Per raw partition held: envelopes after the last one handled."""
        try:
            held = [tp for tp in self.app.assignor.assigned_actives()
                    if tp.topic == self.raw_topic]
        except Exception:  # no assignment yet, or a rebalance in progress: no gauge this time
            return {}
        lags = {tp.partition: self._lag_of(tp) for tp in held}
        return {partition: lag for partition, lag in lags.items() if lag is not None}

    def _lag_of(self, tp: TopicPartition) -> int | None:
        """None while unknown (no consumer yet, or the partition not fetched yet, or its lock
        not this worker's yet: the journal is read only under it)."""
        if not self.ownership.holds(tp.partition):
            return None
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception:
            return None
        if highwater is None:
            return None
        return max(0, highwater - self.stages.visitors.position(tp.partition) - 1)

    # -- web pages -----------------------------------------------------------------------------

    def _add_pages(self) -> None:
        """Lookups for `trackpipe profile` and the triggers service, each routed to the worker
        that owns the key; and ``/metrics``."""
        shown = {"visitor": ("visitors", lambda v: v.shown()),
                 "identity": ("identities", lambda s: {"profile": s.profile,
                                                       "has_id": s.has_id}),
                 "profile": ("profiles", lambda p: p)}
        for path, (name, show) in shown.items():
            table, state = self.faust_tables[name], self.stages.tables[name]

            async def lookup(view: Any, request: Any, state: TableState = state,
                             show: Callable[[Any], Any] = show) -> Any:
                found = state.get(request.query["key"].encode())
                return view.json(None if found is None else show(found))

            routed = self.app.table_route(table=table, query_param="key")(lookup)

            async def page(view: Any, request: Any, table: Any = table,
                           routed: Any = routed) -> Any:
                # faust's router hashes the key with its producer's metadata, which knows a
                # changelog topic only once something was written to it from this worker.
                topic = table.changelog_topic.get_topic_name()
                await self.app.producer._ensure_producer().partitions_for(topic)
                return await routed(view, request)

            self.app.page(f"/lookup/{path}")(page)

        async def metrics(view: Any, request: Any) -> Any:
            lag = self.lag()
            behind = lag_seconds(lag, self.stages.visitors.stream_ms, int(time.time() * 1000),
                                 self.stages.metrics.started_ms)
            return view.text(self.stages.metrics.render(lag, behind),
                             content_type="text/plain; version=0.0.4")

        self.app.page("/metrics")(metrics)
