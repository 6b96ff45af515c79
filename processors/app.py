"""The faust app: agents that move records between Kafka, tables and the pure rules.

Three agents, each ``concurrency=1`` with ``at_least_once`` (faust loses data with more,
faust issue 606):

- ``visitors`` reads the raw topic together with ``ticks`` and ``rebinds``; all three are
  co-partitioned (same partition count, same keys), so one partition's visitors, its clock and
  its identity answers arrive in one ordered stream. It dedupes by event id, assigns cookies,
  asks ``processors.identity`` for the profile, ``processors.visits`` for the visit, builds the
  enriched record, writes the day log and emits actions, visits and links.
- ``identities`` reads ``links`` (keyed by identifier), keeps who owns each identifier, emits
  merges and answers the asking visitor on ``rebinds``.
- ``profiles`` reads ``profile-updates`` (keyed by profile), keeps each profile with
  ``processors.profiles``, folds merged ones in and publishes them to ``profiles``.

Transient I/O errors are retried with backoff; anything else a record causes is its own fault.
Outputs and table writes go through ``processors.sink`` (aiokafka's producer, which faust
flushes before it commits the offsets of the records that caused them): a handler collects
its messages and they are sent once it has finished.
A raw record's messages and table writes go to ``processors.outbox`` before its day-log line
is written (the writes reach the tables after it), and a record that comes back after a crash
with its line written sends its messages again and re-applies the writes that are newer than
the recovered table's (the day log is the commit point; consumers of the outputs are
idempotent, see that module).
Any record that fails goes to the dead-letter topic with the error and its source offset, and
the stream goes on. Timers cannot write tables, so a timer only sends a tick per owned
partition; the visitors agent closes expired visits when the tick arrives in its stream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import time
import traceback
from dataclasses import replace
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from processors import dedupe, identity, profiles, quotas, visits
from processors.actions import Context, build_record, remember_action, split
from processors.daylog import DayLogWriter
from processors.deadlines import DeadlineIndex
from processors.jsonline import to_json
from processors.metrics import WorkerMetrics
from processors.outbox import Outbox, Output
from processors.sink import Sink
from processors.timestamps import event_time
from schemas import topics
from schemas.identifiers import identifiers_of
from schemas.quota import month_of
from schemas.raw import RawRecord
from trackpipe import registry
from trackpipe.kafka.partition import read_partition
from trackpipe.settings import Settings

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 1.0
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
BACKLOG_MS = 2000  # a partition whose newest record read is older than this, with more to read


def advertised_host(bind_host: str) -> str:
    """The address other workers reach this one at (faust redirects table lookups there):
    the bind address, or this host's own address when bound to every interface."""
    if bind_host in ("0.0.0.0", "::", ""):
        return socket.gethostbyname(socket.gethostname())
    return bind_host


def _fields(value: Any) -> dict[str, Any]:
    """A frozen, flat slots dataclass of the rules as a dict (``dataclasses.asdict``
    deep-copies, which was an eighth of a record's own cost)."""
    return {name: getattr(value, name) for name in value.__slots__}


class Processors:
    """Builds the faust app for one worker process; state lives in its tables."""

    def __init__(self, settings: Settings, bootstrap: str, web_port: int) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self._swept: dict[int, int] = {}  # partition → last dedupe sweep (ms), per process
        self._deadlines = DeadlineIndex()  # an index of the visitors table, rebuilt from it
        self._counts_sent: dict[bytes, int] = {}  # quota counter → count last published
        self._stream_ms: dict[int, int] = {}  # partition → newest receipt time processed
        self.project_quotas: dict[str, int | None] = {}  # from the registry topic
        self.daylog = DayLogWriter(settings.data_dir / "logs")
        self.outbox = Outbox(settings.data_dir / "processors" / "outbox")
        self._pending: list[Output] = []  # what the record being handled sends when done
        self._unowned: list[Output] = []  # sent by the tick timer: not caused by a record
        self.metrics = WorkerMetrics()
        (settings.data_dir / "processors").mkdir(parents=True, exist_ok=True)
        t = settings.topic
        self.raw_topic = t(topics.RAW)
        self.app = faust.App(
            settings.topic_prefix + "processors",
            broker=[f"kafka://{server}" for server in bootstrap.split(",")],
            store="memory://",
            processing_guarantee="at_least_once",
            topic_partitions=settings.raw_partitions,
            topic_replication_factor=settings.replication_factor,
            consumer_auto_offset_reset="earliest",
            # a 5 ms linger lets neighbouring records' messages share produce requests
            producer_acks=-1, producer_linger=0.005,
            web_enabled=True, web_host=settings.worker_web_host, web_port=web_port,
            canonical_url=f"http://{advertised_host(settings.worker_web_host)}:{web_port}",
            datadir=str(settings.data_dir / "processors"),
            table_standby_replicas=0,
            # a crashed worker's partitions move after 10 s, not faust's default minute
            broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
        )
        raw_codec = {"key_serializer": "raw", "value_serializer": "raw"}
        self.sink = Sink(self.app)
        source = self.app.topic(t(topics.RAW), t(topics.TICKS), t(topics.REBINDS), **raw_codec)
        # Keys are the bytes of the record keys, so that faust routes a lookup by key to the
        # worker that owns it (its router hashes the serialized key like the producer did).
        options = {"default": None, "partitions": settings.raw_partitions, "key_type": bytes}
        self.visitors_table = self.app.Table("visitors", **options)
        self.seen = self.app.Table("seen", **options)
        self.identities = self.app.Table("identities", **options)
        self.profiles = self.app.Table("profiles", **options)
        self.quota_counts = self.app.Table("quota_counts", **options)
        self.quota_totals = self.app.Table("quota_totals", **options)
        self._changelogs = {table.changelog_topic.get_topic_name(): table
                            for table in self.app.tables.values()}
        declared = {settings.topic(spec.name) for spec in topics.TOPICS}
        for table in self.app.tables.values():  # checked at boot, like every topic
            name = table.changelog_topic.get_topic_name()
            if name not in declared:
                raise RuntimeError(f"{name} is missing from schemas.topics.TABLES")
        self.app.agent(source, name="visitors", concurrency=1)(self._visitors_agent)
        for topic, name, handler in ((topics.LINKS, "identities", self._link),
                                     (topics.PROFILE_UPDATES, "profiles", self._profile_change),
                                     (topics.QUOTA_COUNTS, "quotas", self._quota_count)):
            self.app.agent(self.app.topic(t(topic), **raw_codec), name=name,
                           concurrency=1)(self._agent_of(handler))
        self.app.task(self._follow_registry)
        self._add_lookups()
        self.app.timer(TICK_INTERVAL_S)(self._send_ticks)
        self.app.on_partitions_assigned.connect(self._on_assigned)

    # -- the visitors agent --------------------------------------------------------------------

    async def _visitors_agent(self, stream: Any) -> None:
        names = {self.settings.topic(topics.TICKS): self._tick,
                 self.settings.topic(topics.REBINDS): self._rebind}
        async for event in stream.events():
            await self._guarded(names.get(event.message.topic, self._raw), event.message)

    def _agent_of(self, handle: Any) -> Any:
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                await self._guarded(handle, event.message)
        return agent

    async def _guarded(self, handle: Any, message: Any) -> None:
        """Handle a record, then send what it emitted: a fault of the record goes to the
        dead-letter topic and the stream goes on; transient I/O (Kafka, the disk) is retried,
        holding the partition, because dead-lettering a good record would take it out of the
        day logs."""
        backoff_s = RETRY_FIRST_S
        while True:
            self._pending = []
            try:
                await handle(message)
                break
            except (KafkaError, OSError) as exc:
                backoff_s = await self._retry_in(backoff_s, message, exc)
            except Exception as exc:  # a record's own fault must not stop the partition
                await self._dead(message, exc)
                return
        await self._send(self._pending, message)

    async def _send(self, outputs: list[Output], message: Any) -> None:
        """Send what handling ``message`` emitted (a table's changelog to the partition of that
        record). A failed send is retried from where it stopped: handling again would find
        the tables already changed. A message too large ever to send is the record's fault."""
        backoff_s, sent = RETRY_FIRST_S, 0
        while sent < len(outputs):
            topic, key, value = outputs[sent]
            try:
                await self.sink.send(topic, key, value,
                                     message.partition if topic in self._changelogs else None)
                sent += 1
            except MessageSizeTooLargeError as exc:
                await self._dead(message, exc)
                sent += 1
            except KafkaError as exc:
                backoff_s = await self._retry_in(backoff_s, message, exc)

    @staticmethod
    async def _retry_in(backoff_s: float, message: Any, exc: BaseException) -> float:
        log.warning("retrying %s[%s]@%s in %.1f s: %r", message.topic, message.partition,
                    message.offset, backoff_s, exc)
        await asyncio.sleep(backoff_s)
        return min(backoff_s * 2, RETRY_MAX_S)

    async def _raw(self, message: Any) -> None:
        """Process a raw record, first any records of its partition the stream skipped.

        faust can hand an agent a record past offsets it never delivered after a rebalance
        (faust issues 216 and 221) and then commit past them. The day log's position says
        which offsets were handled, so a gap is fetched directly from Kafka and processed in
        order before this record: nothing is lost whatever the consumer did.
        """
        handled = self.daylog.position(message.partition)
        if handled >= 0 and message.offset > handled + 1:
            log.warning("raw partition %s: offsets %s-%s were skipped by the stream; "
                        "fetching them", message.partition, handled + 1, message.offset - 1)
            async for missed in read_partition(self.bootstrap, self.raw_topic, message.partition,
                                               handled + 1, message.offset):
                await self._guarded(self._raw_one, missed)
        await self._raw_one(message)

    async def _raw_one(self, message: Any) -> None:
        if message.offset <= self.daylog.position(message.partition):
            # Handled before a crash or a rebalance: its messages may not have left then, so
            # they are sent again; so are its table writes that the table does not hold.
            self._pending = [output for output in self.outbox.find(message.partition,
                                                                   message.offset) or ()
                             if output[0] not in self._changelogs or self._reapplied(*output)]
            return
        self._pending = []  # (``_raw`` may have sent a skipped record's messages before)
        await self._process_raw(message)

    async def _process_raw(self, message: Any) -> None:
        raw = RawRecord.from_bytes(message.value)
        if self.seen.get(raw.id.encode()) is not None:  # a replay (spool, retry)
            self.daylog.skip(message.partition, message.offset)
            return
        params = raw.params()
        ids = identifiers_of(params)
        visitor_key, cookie_assigned = raw.visitor_key, False
        if not visitor_key:  # no identifier at all: a cookie derived from the event id
            ids = replace(ids, cookie="tp" + raw.id.replace("-", ""))
            visitor_key, cookie_assigned = ids.visitor_key, True
        key = f"{raw.project}\n{visitor_key}".encode()
        entry = self.visitors_table.get(key) or {}
        state = identity.VisitorState(**entry["state"]) if entry.get("state") else None
        decision = identity.resolve_visitor(raw.project, visitor_key, state, ids)
        parts = split(params)
        when = event_time(parts.builtins.get("timestamp"), raw.received_ms)

        current = visits.Visit(**entry["visit"]) if entry.get("visit") else None
        visit, started = current, False
        if raw.endpoint != "identify":
            step = visits.next_visit(
                current, raw.received_ms, visits.timeout_ms(parts.builtins.get("timeout")),
                is_action=raw.endpoint == "ce", new_visit_id="v" + raw.id.replace("-", ""),
                properties=parts.visit)
            if step.ended is not None:
                self.metrics.visits_closed += 1
                self._visit_record("visit ended", raw.project, visitor_key,
                                   decision.profile, step.ended)
            if step.started and step.visit is not None:
                self._visit_record("visit started", raw.project, visitor_key,
                                   decision.profile, step.visit)
            visit, started = step.visit, step.started

        recent = entry.get("recent") or {}
        idptnc = parts.builtins.get("idptnc")
        record = build_record(
            Context(raw.id, raw.project, raw.endpoint, raw.received_ms, raw.ip, raw.user_agent,
                    decision.profile, visitor_key, cookie_assigned,
                    visit.id if visit else None, when,
                    updates=recent.get(str(idptnc)) if idptnc else None,
                    over_quota=raw.over_quota,
                    visit_properties=visit.properties if visit else None),
            parts, raw.referer, raw.language)
        # Table writes are applied once the line is written (a retry must find the tables as
        # they were) but recorded in the outbox with the messages, to be replayed with them.
        writes = [(self.seen, raw.id.encode(), [raw.received_ms, message.partition])]
        if raw.endpoint == "ce":
            recent = remember_action(recent, idptnc, raw.id)
            counter = f"{raw.project}\n{month_of(raw.received_ms)}\n{message.partition}".encode()
            writes.append((self.quota_counts, counter, (self.quota_counts.get(counter) or 0) + 1))
        writes.append((self.visitors_table, key, {
            "state": _fields(decision.state), "visit": _fields(visit) if visit else None,
            "recent": recent, "partition": message.partition, "v": entry.get("v", 0) + 1}))
        if raw.endpoint in ("ce", "update"):
            self._emit(topics.ACTIONS, message.key, to_json(record))
        self._to_profile(raw.project, decision.profile, {
            "kind": "update", "event_ms": when.ms, "id": ids.id, "email": ids.email,
            "cookie": ids.cookie, "properties": parts.visitor,
            "actions": int(raw.endpoint == "ce"), "visits": int(started),
            "origin": [message.partition, message.offset]})
        for link in decision.links:
            self._emit(topics.LINKS, f"{raw.project}\n{link.identifier}".encode(),
                       to_json({"project": raw.project, "at_ms": when.ms, **_fields(link)}))
        self._pending += [self._changelog(*write) for write in writes]
        self.outbox.record(message.partition, message.offset, self._pending)
        started_s = time.perf_counter()
        self.daylog.write(message.partition, message.offset, raw.project, raw.received_ms,
                          record)
        self.metrics.log_write.observe(time.perf_counter() - started_s)
        self.metrics.records[raw.endpoint] += 1
        if raw.endpoint == "ce":
            self.metrics.actions[raw.project] += 1
        self.metrics.visit_opened(message.partition,
                                  int(visit is not None) - int(current is not None))
        for write in writes:
            self._set(*write)
        if visit is not None:
            self._deadlines.push(message.partition, visit.deadline_ms, key)
        self._stream_ms[message.partition] = max(raw.received_ms,
                                                 self._stream_ms.get(message.partition, 0))

    async def _tick(self, message: Any) -> None:
        now_ms = int(message.value)
        if dedupe.sweep_due(self._swept.get(message.partition), now_ms):
            for key in list(dedupe.expired(self.seen.items(), message.partition, now_ms)):
                self._put(self.seen, key, None)
            self._swept[message.partition] = now_ms
        self._send_counts(message.partition)
        if not self._deadlines.has(message.partition):  # first tick since start or rebalance
            open_visits = [(entry["visit"]["deadline_ms"], key)
                           for key, entry in self.visitors_table.items()
                           if entry and entry.get("partition") == message.partition
                           and entry["visit"]]
            self._deadlines.rebuild(message.partition, open_visits)
            self.metrics.open_visits[message.partition] = len(open_visits)
        if self._catching_up(message.partition, now_ms):
            return  # records still to read may extend these visits; close them once read
        for key in self._deadlines.due(message.partition, now_ms):
            entry = self.visitors_table.get(key)
            if not entry or not entry["visit"]:
                continue  # closed meanwhile: a stale index entry
            visit = visits.Visit(**entry["visit"])
            if visits.is_expired(visit, now_ms):  # else it was extended: indexed again
                project, visitor_key = key.decode().split("\n", 1)
                self._visit_record("visit ended", project, visitor_key,
                                   entry["state"]["profile"], visit)
                self._put(self.visitors_table, key,
                          {**entry, "visit": None, "v": entry.get("v", 0) + 1})
                self.metrics.visits_closed += 1
                self.metrics.visit_opened(message.partition, -1)

    async def _rebind(self, message: Any) -> None:
        answer = json.loads(message.value)
        link = identity.Link(**answer["link"])
        key = message.key
        entry = self.visitors_table.get(key)
        state = identity.VisitorState(**entry["state"]) if entry else None
        rebound = identity.rebind(state, link, answer["answer"])
        if rebound is not None:
            self._put(self.visitors_table, key, {**entry, "state": _fields(rebound),
                                                 "v": entry.get("v", 0) + 1})

    def _reapplied(self, changelog: str, key: bytes, value: bytes | None) -> bool:
        """Apply a table write of a record handled before (from the outbox) if it is newer
        than what the recovered table holds: its changelog record may not have been flushed
        before a crash, while a later write (a tick's, a rebind's: records not read again)
        must not be undone."""
        table = self._changelogs[changelog]
        replayed, current = json.loads(value or b"null"), table.get(key)
        if replayed is None:
            return False  # a raw record deletes nothing
        if current is not None:
            if table is self.visitors_table:  # an entry counts its writes
                newer = replayed["v"] > current.get("v", 0)
            elif table is self.quota_counts:  # a counter only grows
                newer = replayed > current
            else:  # seen: an event id is written once
                newer = False
            if not newer:
                return False
        self._set(table, key, replayed)
        if table is self.visitors_table and replayed["visit"]:
            self._deadlines.push(replayed["partition"], replayed["visit"]["deadline_ms"], key)
        return True

    @staticmethod
    def _set(table: Any, key: bytes, value: Any) -> None:
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value

    def _emit(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Queue a message to send once the record at hand is handled (a raw record's go to
        the outbox first, see ``_process_raw``)."""
        self._pending.append((self.settings.topic(topic), key, value))

    def _put(self, table: Any, key: bytes, value: Any) -> None:
        """``table[key] = value`` (None deletes): the store now, the changelog with the rest
        (``processors.sink`` says why not faust's own write)."""
        self._set(table, key, value)
        self._pending.append(self._changelog(table, key, value))

    @staticmethod
    def _changelog(table: Any, key: bytes, value: Any) -> Output:
        return (table.changelog_topic.get_topic_name(), key,
                None if value is None else to_json(value))

    def _visit_record(self, kind: str, project: str, visitor_key: str, profile: str,
                      visit: visits.Visit) -> None:
        self._emit(topics.VISITS, f"{project}\n{visitor_key}".encode(), to_json({
            "type": kind, "project": project, "visitor_key": visitor_key, "profile": profile,
            "visit": visit.id, "start_ms": visit.start_ms, "last_ms": visit.last_ms,
            "duration_ms": visit.duration_ms, "actions": visit.actions,
            "properties": visit.properties}))

    # -- the identities agent ------------------------------------------------------------------

    async def _link(self, message: Any) -> None:
        body = json.loads(message.value)
        project, at_ms = body.pop("project"), body.pop("at_ms")
        link = identity.Link(**body)
        key = message.key
        current = self.identities.get(key)
        decision = identity.resolve_link(
            identity.IdentityState(**current) if current else None, link)
        self._put(self.identities, key, _fields(decision.state))
        if decision.merge is not None:
            self.metrics.merges += 1
            self._emit(topics.MERGES, f"{project}\n{decision.merge.source}".encode(),
                       to_json({"project": project, "at_ms": at_ms,
                                "visitor_key": link.visitor_key, **_fields(decision.merge)}))
            self._to_profile(project, decision.merge.source,
                             {"kind": "merge", "into": decision.merge.into})
        self._emit(topics.REBINDS, f"{project}\n{link.visitor_key}".encode(),
                   to_json({"link": _fields(link), "answer": decision.answer}))

    # -- the profiles agent --------------------------------------------------------------------

    def _to_profile(self, project: str, profile: str, body: dict[str, Any]) -> None:
        self._emit(topics.PROFILE_UPDATES, f"{project}\n{profile}".encode(), to_json(body))

    async def _profile_change(self, message: Any) -> None:
        """Updates and folds reach a merged profile's survivor; a merge marks the source and
        sends its state to the survivor, which folds it in."""
        body = json.loads(message.value)
        key = message.key
        project, profile_id = key.decode().split("\n", 1)
        current = self.profiles.get(key) or profiles.new_profile(project, profile_id)
        kind = body.pop("kind")
        if current["merged_into"]:
            if kind != "merge":  # a merged profile's updates belong to its survivor
                self._to_profile(project, current["merged_into"],
                                 {**body, "kind": kind,
                                  "via": f"{body.get('via') or ''}>{profile_id}"})
            return
        if kind == "update":
            changed = profiles.apply_update(current, body)
        elif kind == "fold":
            changed = profiles.fold(current, body["source"])
        else:  # merge: this profile is folded into another one
            changed = {**current, "merged_into": body["into"]}
            self._to_profile(project, body["into"], {"kind": "fold", "source": current})
        if changed is None:
            return  # applied before a crash: a replay
        self._put(self.profiles, key, changed)
        self._emit(topics.PROFILES, key, to_json(profiles.shown(changed)))

    def _add_lookups(self) -> None:
        """Web views for `trackpipe profile`; each routes to the worker owning the key."""
        for name, table in (("visitor", self.visitors_table), ("identity", self.identities),
                            ("profile", self.profiles)):
            async def lookup(view: Any, request: Any, table: Any = table) -> Any:
                return view.json(table.get(request.query["key"].encode()))

            routed = self.app.table_route(table=table, query_param="key")(lookup)

            async def page(view: Any, request: Any, table: Any = table,
                           routed: Any = routed) -> Any:
                # faust's router hashes the key with its producer's metadata, which knows a
                # changelog topic only once something was written to it from this worker.
                topic = table.changelog_topic.get_topic_name()
                await self.app.producer._ensure_producer().partitions_for(topic)
                return await routed(view, request)

            self.app.page(f"/lookup/{name}")(page)

        async def metrics(view: Any, request: Any) -> Any:
            return view.text(self.metrics.render(self._lag()),
                             content_type="text/plain; version=0.0.4")

        self.app.page("/metrics")(metrics)

    def _catching_up(self, partition: int, now_ms: int) -> bool:
        """True while a partition reads a backlog (after downtime or a rebalance): records
        not yet read, and the newest one read was received well before now. Closing visits by
        the clock then would end visits that the backlog extends."""
        newest = self._stream_ms.get(partition)
        lag = self._lag_of(TopicPartition(self.raw_topic, partition))
        return bool(lag) and (newest is None or now_ms - newest > BACKLOG_MS)

    def _lag(self) -> dict[int, int]:
        """Per raw partition held: records after the last one handled (day-log position)."""
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
        return max(0, highwater - self.daylog.position(tp.partition) - 1)

    # -- quotas --------------------------------------------------------------------------------

    def _send_counts(self, partition: int) -> None:
        """Publish this partition's changed action counts (on ticks: at most once a second)."""
        for key, count in list(self.quota_counts.items()):
            project, month, counted_in = key.decode().split("\n")
            if int(counted_in) == partition and self._counts_sent.get(key) != count:
                self._emit(topics.QUOTA_COUNTS, project.encode(), to_json(
                    {"month": month, "partition": partition, "count": count}))
                self._counts_sent[key] = count

    async def _quota_count(self, message: Any) -> None:
        body = json.loads(message.value)
        total = quotas.add_count(self.quota_totals.get(message.key), body["month"],
                                 body["partition"], body["count"])
        if total is not None:
            self._put(self.quota_totals, message.key, total)
            self._pending.append(self._quota_state(message.key.decode(), total))

    def _quota_state(self, project: str, total: dict[str, Any]) -> Output:
        state = quotas.state(project, total, self.project_quotas.get(project))
        return self.settings.topic(topics.QUOTA), project.encode(), state.to_bytes()

    async def _follow_registry(self) -> None:
        """Keep each project's quota; when one changes, republish its state (if this worker
        holds the project's total), so raising a quota lifts the 402 within seconds."""
        def changed(name: str, record: Any) -> None:
            quota = record.quota if record is not None else None
            if self.project_quotas.get(name) != quota:
                self.project_quotas[name] = quota
                total = self.quota_totals.get(name.encode())
                if total is not None:
                    self._unowned.append(self._quota_state(name, total))  # sent by a timer

        await registry.follow_forever(self.bootstrap, self.settings.topic(topics.PROJECTS),
                                      changed, lambda: None)

    # -- plumbing ------------------------------------------------------------------------------

    async def _send_ticks(self) -> None:
        now = str(int(time.time() * 1000)).encode()
        try:
            while self._unowned:
                await self.sink.send(*self._unowned[0])
                self._unowned.pop(0)
            for tp in self.app.assignor.assigned_actives():
                if tp.topic == self.raw_topic:
                    await self.sink.send(self.settings.topic(topics.TICKS), b"tick", now,
                                         tp.partition)
        except Exception:  # a missed tick only delays closing visits; never crash the worker
            log.exception("could not send ticks")

    async def _on_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        # Another worker may have written these partitions' logs meanwhile.
        log.info("assigned raw partitions %s", sorted(tp.partition for tp in assigned
                                                      if tp.topic == self.raw_topic))
        self.daylog.forget(tp.partition for tp in assigned)
        self.outbox.forget([tp.partition for tp in assigned])
        self._deadlines.forget()
        self.metrics.open_visits.clear()

    async def _dead(self, message: Any, exc: BaseException) -> None:
        self.metrics.dead_letters += 1
        if message.topic == self.raw_topic:
            self.daylog.skip(message.partition, message.offset)
        log.warning("dead letter from %s[%s]@%s: %r", message.topic, message.partition,
                    message.offset, exc)
        await self.sink.send(self.settings.topic(topics.DEADLETTER), message.key, to_json({
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exception_only(exc)[-1].strip(),
            "topic": message.topic, "partition": message.partition, "offset": message.offset,
            "key": base64.b64encode(message.key or b"").decode(),
            "value": base64.b64encode(message.value or b"").decode()}))
