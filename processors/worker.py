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
issue 606) and handles one envelope per faust event, which is how faust's per-event cost is
shared by many records. What the stages send is gathered in ``processors.outbound`` and sent
every ``FLUSH_INTERVAL_S``; before faust commits offsets (it awaits its producer's
``flush``, which is replaced for that) the checkpoint makes the stages' work durable in the
order that survives a crash (``processors.checkpoint``), so a committed offset never runs
ahead of the state it produced, nor a stored state ahead of the outputs it gates.

A record's own fault is a dead letter and the stream goes on; transient I/O (Kafka, the disk)
is retried with backoff, holding the partition, because dead-lettering a good record would
take it out of the day logs. Timers cannot write tables in faust, so the clock is a tick per
owned partition sent into ``ticks``; the visitors stage closes visits when it arrives in its
stream.
"""

from __future__ import annotations

import hmac
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import msgpack
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP

from processors.checkpoint import Checkpoint
from processors.daylog import DayLogWriter
from processors.guard import guarded
from processors.journal import Journal
from processors.metrics import WorkerMetrics
from processors.outbound import KafkaTransport, Outbound, Transport
from processors.stages.identities import IdentitiesStage, decode_owner, encode_owner
from processors.stages.profiles import ProfilesStage
from processors.stages.quotas import QuotasStage
from processors.stages.visitor import decode_visitor, encode_visitor
from processors.stages.visitors import Topics, VisitorsStage
from processors.state import TableState
from runtime import registry
from runtime.partition import committed_offsets, read_partition
from runtime.settings import Settings
from schemas import profile, topics
from schemas.deadletter import DeadLetter

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 1.0
FLUSH_INTERVAL_S = 0.05
BACKLOG_MS = 2000  # a partition whose newest record read is older than this, with more to read


def advertised_host(bind_host: str) -> str:
    """The address other workers reach this one at (faust redirects table lookups there):
    the bind address, or this host's own address when bound to every interface; an IPv6
    address in brackets, as a URL holds it."""
    if bind_host in ("0.0.0.0", "::", ""):
        return socket.gethostbyname(socket.gethostname())
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def token_required(token: str) -> Any:
    """aiohttp middleware: with a token set, every page but ``/metrics`` asks for it
    (``Authorization: Bearer``, or ``?token=``): the lookups answer people's emails and ids,
    and faust's own pages show tables. faust forwards a routed lookup with its headers."""
    from aiohttp import web

    @web.middleware
    async def middleware(request: Any, handler: Any) -> Any:
        if token and request.path != "/metrics":
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            given = given or request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.Response(status=401, text="this worker asks for its token "
                                    "(TRACKPIPE_WORKER_TOKEN, as Authorization: Bearer)\n")
        return await handler(request)

    return middleware


class RocksStore:
    """faust's RocksDB store as ``processors.state`` uses it. faust keeps one database per
    table partition (``_dbs``, the partitions this worker holds) and takes a write's partition
    from the event being handled; the stages write at the flush before a commit, where there
    is none, so the partition is given. A write for a partition this worker no longer holds
    (revoked just before that flush) is left to the changelog, which its next owner reads:
    opening the database again would take its lock from that owner."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)  # the handled event's partition, else every partition's

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        db = self.store._dbs.get(partition)
        if db is not None:
            db.put(key, value)

    def delete(self, key: bytes, partition: int) -> None:
        db = self.store._dbs.get(partition)
        if db is not None:
            db.delete(key)

    def items(self) -> Any:
        return self.store.items()

    def persisted(self, tp: TP, offset: int) -> None:
        """faust recovers a partition from the offset its database says it holds."""
        if tp.partition in self.store._dbs:
            self.store.set_persisted_offset(tp, offset)


async def _nothing_in_flight() -> None:
    """A transport that hands messages over at once (tests, benchmarks) has none in flight."""


class Stages:
    """The four stages over their tables, with no faust and no Kafka: what a worker runs, and
    the public way in for tests and benchmarks (``Worker`` builds one over faust's tables)."""

    def __init__(self, settings: Settings, transport: Transport,
                 stores: dict[str, Any] | None = None, changelogs: dict[str, str] | None = None,
                 deliver: Callable[[], Awaitable[None]] = _nothing_in_flight,
                 persisted: Callable[[str, int, int], None] = lambda t, p, o: None) -> None:
        t = settings.topic
        stores = stores if stores is not None else {name: {} for name in STATE}
        changelogs = changelogs or {name: t(topics.CHANGELOGS[name]) for name in STATE}
        self.metrics = WorkerMetrics()
        partitions = {t(spec.name): spec.partitions or settings.raw_partitions
                      for spec in topics.TOPICS}
        self.outbound = Outbound(transport, partitions, t(topics.DEADLETTER))
        self.tables = {name: TableState(changelogs[name], stores[name], *codec)
                       for name, codec in STATE.items()}
        processors_dir = settings.data_dir / "processors"
        daylog = DayLogWriter(settings.data_dir / "logs")
        self.visitors = VisitorsStage(
            self.tables["visitors"], self.tables["quota_counts"],
            Journal(processors_dir / "journal"), daylog,
            self.outbound, self.metrics,
            Topics(t(topics.ACTIONS), t(topics.VISITS), t(topics.LINKS),
                   t(topics.PROFILE_UPDATES), t(topics.QUOTA_COUNTS), t(topics.DEADLETTER),
                   t(topics.RAW)))
        self.identities = IdentitiesStage(self.tables["identities"], self.outbound,
                                          self.metrics, t(topics.MERGES), t(topics.REBINDS),
                                          t(topics.PROFILE_UPDATES), daylog)
        self.profiles = ProfilesStage(self.tables["profiles"], self.outbound, self.metrics,
                                      t(topics.PROFILE_UPDATES))
        self.quotas = QuotasStage(self.tables["quota_totals"], self.outbound, t(topics.QUOTA))
        self.checkpoint = Checkpoint(list(self.tables.values()), self.outbound,
                                     self.visitors.sync, deliver, persisted)

    async def commit(self) -> None:
        """Make what was handled durable, in the order that survives a crash
        (``processors.checkpoint``); faust commits the offsets after it."""
        await self.checkpoint.run()

    def close(self) -> None:
        """Close the files the stages hold open (the journal, the day logs)."""
        self.visitors.journal.close()
        self.visitors.daylog.close()


# A worker has a database per table and partition (48 with 12 partitions): faust's defaults
# (a 2 GiB block cache, 500 MiB compressed, 3 × 64 MiB write buffers, each per database) let
# one worker grow to 2.4 GB with a million visitors. They are table options: faust ignores
# an App-level `rocksdb_options`, which an earlier version set to no effect.
ROCKSDB = {"write_buffer_size": 4 * 1024 * 1024, "max_write_buffer_number": 2,
           "block_cache_size": 8 * 1024 * 1024,
           "target_file_size_base": 32 * 1024 * 1024}


def _packed(value: Any) -> bytes:
    return msgpack.packb(value)


# table → (encode, decode) of the values its store and changelog hold
STATE: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "visitors": (encode_visitor, decode_visitor),
    "quota_counts": (_packed, msgpack.unpackb),
    "identities": (encode_owner, decode_owner),
    "profiles": (profile.encode, profile.decode),
    "quota_totals": (_packed, msgpack.unpackb),
}


class Worker:
    """The faust app of one worker process; ``app`` is what faust's ``Worker`` runs."""

    def __init__(self, settings: Settings, bootstrap: str, web_port: int) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        t = settings.topic
        self.raw_topic = t(topics.RAW)
        (settings.data_dir / "processors").mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            settings.topic_prefix + "processors",
            broker=[f"kafka://{server}" for server in bootstrap.split(",")],
            # Tables on local disk: a restarted worker reads only the changelog written since
            # (docs/benchmarks.md: a million visitors took minutes to recover in memory), and
            # memory holds what is used, not every visitor (ROCKSDB, given to each table).
            store="rocksdb://",
            processing_guarantee="at_least_once",
            topic_partitions=settings.raw_partitions,
            topic_replication_factor=settings.replication_factor,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1, producer_max_batch_size=512 * 1024,
            producer_max_request_size=topics.MAX_MESSAGE_BYTES,
            broker_commit_interval=settings.commit_interval_ms / 1000,
            # faust binds web_bind (its default 0.0.0.0) and only advertises web_host: bound
            # where the settings say, which is what they checked needs no token. env={}: faust
            # would otherwise let WEB_BIND, WEB_PORT and the like in the environment override
            # these arguments, unchecked; the settings are the one source.
            web_enabled=True, web_bind=settings.worker_web_host, env={},
            web_host=settings.worker_web_host, web_port=web_port,
            canonical_url=f"http://{advertised_host(settings.worker_web_host)}:{web_port}",
            # the tables' databases: one per table partition, locked by the worker that holds
            # it, so the workers of one host can share the folder, and a worker started again
            # finds what it had
            datadir=str(settings.data_dir / "processors" / "state"),
            table_standby_replicas=0,
            # a crashed worker's partitions move after 10 s, not faust's default minute
            broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
            # faust's repaired Cython fast paths: a quarter more events a second here
            # (docs/benchmarks.md); each agent has one channel, where they change nothing else
            cython_optimizations=True,
            web_application_options={"middlewares": [token_required(settings.worker_token)]},
        )
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        options = {"default": None, "partitions": settings.raw_partitions, "key_type": bytes,
                   "value_type": bytes, "options": dict(ROCKSDB)}
        # The profiles table's changelog is the public profiles topic: published once.
        profiles_topic = self.app.topic(t(topics.PROFILES), **raw,
                                        partitions=settings.raw_partitions, compacting=True,
                                        acks=False, internal=True)
        faust_tables = {name: self.app.Table(name, **options, **(
            {"changelog_topic": profiles_topic} if name == "profiles" else {}))
            for name in STATE}
        declared = {t(spec.name) for spec in topics.TOPICS}
        for table in faust_tables.values():  # checked at boot, like every topic
            name = table.changelog_topic.get_topic_name()
            if name not in declared:
                raise RuntimeError(f"{name} is missing from schemas.topics")
        stores = {name: RocksStore(table.data) for name, table in faust_tables.items()}
        by_changelog = {faust_tables[name].changelog_topic.get_topic_name(): store
                        for name, store in stores.items()}

        def persisted(topic: str, partition: int, offset: int) -> None:
            store = by_changelog.get(topic)
            if store is not None:
                store.persisted(TP(topic, partition), offset)

        producer = self.app.producer
        deliver = producer.flush  # faust's own, before _commit_with_state wraps it
        self.stages = Stages(
            settings, KafkaTransport(lambda: producer._ensure_producer(),
                                     lambda *sent: self.stages.checkpoint.delivered(*sent)),
            stores, {name: table.changelog_topic.get_topic_name()
                     for name, table in faust_tables.items()}, deliver, persisted)
        self.faust_tables = faust_tables
        stages = self.stages
        self.handlers: dict[str, Callable[[Any], Any]] = {
            t(topics.TICKS): self._tick,
            t(topics.REBINDS): lambda m: stages.visitors.handle_rebinds(m.partition, m.value),
            t(topics.LINKS): lambda m: stages.identities.handle_links(m.partition, m.value),
            t(topics.PROFILE_UPDATES):
                lambda m: stages.profiles.handle_changes(m.partition, m.value),
            t(topics.QUOTA_COUNTS): lambda m: stages.quotas.handle_counts(m.partition, m.value),
        }
        self.gap_checked = frozenset(t(name) for name in (
            topics.REBINDS, topics.LINKS, topics.PROFILE_UPDATES, topics.QUOTA_COUNTS))
        self._next_offsets: dict[tuple[str, int], int] = {}
        for topic in self.gap_checked:
            self.handlers[topic] = self._in_order(self.handlers[topic])
        source = self.app.topic(self.raw_topic, t(topics.TICKS), t(topics.REBINDS), **raw)
        self.app.agent(source, name="visitors", concurrency=1)(self._visitors_agent)
        for topic, name in ((topics.LINKS, "identities"), (topics.PROFILE_UPDATES, "profiles"),
                            (topics.QUOTA_COUNTS, "quotas")):
            self.app.agent(self.app.topic(t(topic), **raw), name=name,
                           concurrency=1)(self._agent)
        self.app.task(self._follow_registry)
        self._add_pages()
        self.app.timer(TICK_INTERVAL_S)(self._send_ticks)
        self.app.timer(FLUSH_INTERVAL_S)(self._flush)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self._commit_with_state()

    # -- agents --------------------------------------------------------------------------------

    async def _visitors_agent(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await self._guarded(self.handlers.get(message.topic, self._raw), message)

    async def _agent(self, stream: Any) -> None:
        async for event in stream.events():
            await self._guarded(self.handlers[event.message.topic], event.message)

    async def _raw(self, message: Any) -> None:
        """Handle a raw envelope, first any envelopes of its partition the stream skipped.

        faust can hand an agent a record past offsets it never delivered after a rebalance
        (faust issues 216 and 221) and then commit past them. The journal's position says
        which offsets were handled, so a gap is fetched directly from Kafka and handled in
        order before this envelope: nothing is lost whatever the consumer did.
        """
        handled = self.stages.visitors.position(message.partition)
        if handled >= 0 and message.offset > handled + 1:
            await self._fetch_skipped(message, handled + 1, self._handle_raw)
        self._handle_raw(message)

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

    def _dead_letter(self, message: Any, exc: BaseException) -> None:
        self.stages.metrics.dead_letters += 1
        self.stages.outbound.message(self.settings.topic(topics.DEADLETTER), message.key,
                                     DeadLetter("record", f"{type(exc).__name__}: {exc}",
                                                message.topic, message.partition,
                                                message.offset, key=message.key,
                                                value=message.value).to_json())

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

    async def _on_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        # Another worker may have written these partitions' logs and journal meanwhile.
        partitions = sorted(tp.partition for tp in assigned if tp.topic == self.raw_topic)
        log.info("assigned raw partitions %s", partitions)
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
        project's state when its quota changes, so raising a quota lifts the 402 at once) and
        its retention (applied at the next tick)."""
        def changed(name: str, record: Any) -> None:
            self.stages.quotas.quota_changed(name, record.quota if record is not None else None)
            self.stages.visitors.retention_changed(
                name, record.retention_days if record is not None else None)

        await registry.follow_forever(self.bootstrap, self.settings.topic(topics.PROJECTS),
                                      changed, lambda: None)

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
        """None while unknown (no consumer yet, or the partition not fetched yet)."""
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
            return view.text(self.stages.metrics.render(self.lag()),
                             content_type="text/plain; version=0.0.4")

        self.app.page("/metrics")(metrics)
