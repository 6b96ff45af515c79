"""The visitors stage: raw envelopes in, day-log lines, actions, visits and links out.

It reads one raw partition's stream, in which the partition's raw envelopes, its clock ticks
and the identity answers for its visitors (rebinds) arrive in order (co-partitioned topics,
``processors.worker``). For each raw envelope it decides everything in memory first (a
``Batch``: every visitor read once, the rules of ``processors.identity``, ``visits``,
``actions``), appends that decision to the journal, and only then applies it: one day-log
write per file, the tables' new values, the messages queued in ``processors.outbound``. A
record's own fault (a bad record, a project name that could leave the folder) is a dead
letter for that record, and the envelope goes on.

A request is dropped as a replay when its event id is one the visitor remembers (a spooled
request delivered twice), and an action when its client action id (``idptnc``) is one of the
visitor's recent actions' (a client that retried after losing its connection: SPEC §9).

An envelope at or before the journal's position was decided before (a crash or a rebalance
came before faust committed it): its entry is applied again instead (``processors.journal``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from logstore import lines, retention
from logstore.layout import day_of
from processors import dedupe, identity, visits
from processors.actions import Context, build_record, remember_action, split
from processors.daylog import DayLogWriter
from processors.deadlines import DeadlineIndex
from processors.journal import Entry, Journal
from processors.metrics import WorkerMetrics
from processors.outbound import Outbound
from processors.state import TableState
from processors.timestamps import event_time
from schemas import envelope
from schemas.deadletter import DeadLetter
from schemas.endpoints import Endpoint
from schemas.identifiers import identifiers_of
from schemas.identity import Rebind, scoped_key
from schemas.profile import ProfileUpdate
from schemas.project import check_name
from schemas.quota import QuotaCount, month_of
from schemas.raw import RawRecord
from schemas.visit import ENDED, STARTED, VisitRecord

log = logging.getLogger(__name__)

ACTION_TOPIC = frozenset({Endpoint.CE, Endpoint.UPDATE})  # what goes to the actions topic
RETENTION_EVERY_MS = 3_600_000  # how often a partition's retention is applied (and at a start)

@dataclass(frozen=True, slots=True)
class Visitor:
    """A visitors-table entry: who the device is, its open visit, its recent client action
    ids (``idptnc`` → event id), the event ids it remembers (``processors.dedupe``), the raw
    partition it lives in, and how many times it was written (a replay applies only a newer
    write, see ``processors.journal``)."""
    state: identity.VisitorState
    visit: visits.Visit | None
    recent: dict[str, str]
    seen: dict[str, int]
    partition: int
    version: int

    def shown(self) -> dict[str, Any]:
        """As the lookup page shows it."""
        return {"state": _fields(self.state),
                "visit": _fields(self.visit) if self.visit else None,
                "recent": self.recent, "partition": self.partition, "v": self.version}


def encode_visitor(entry: Visitor) -> bytes:
    state, visit = entry.state, entry.visit
    return msgpack.packb([state.profile, state.id, state.email,
                          None if visit is None else [visit.id, visit.start_ms, visit.last_ms,
                                                      visit.deadline_ms, visit.actions,
                                                      visit.properties],
                          entry.recent, entry.seen, entry.partition, entry.version])


def decode_visitor(data: bytes) -> Visitor:
    if data[:1] == b"{":  # written as JSON before the table held msgpack
        old = orjson.loads(data)
        return Visitor(identity.VisitorState(**old["state"]),
                       visits.Visit(**old["visit"]) if old.get("visit") else None,
                       old.get("recent") or {}, {}, old.get("partition", 0), old.get("v", 0))
    profile, id_, email, visit, recent, seen, partition, version = msgpack.unpackb(data)
    return Visitor(identity.VisitorState(profile, id_, email),
                   None if visit is None else visits.Visit(*visit), recent, seen, partition,
                   version)


def _fields(value: Any) -> dict[str, Any]:
    """A flat slots dataclass as a dict (``dataclasses.asdict`` deep-copies)."""
    return {name: getattr(value, name) for name in value.__slots__}


@dataclass(frozen=True, slots=True)
class Topics:
    """The full names of the topics the stage writes."""
    actions: str
    visits: str
    links: str
    profile_updates: str
    quota_counts: str
    deadletter: str
    raw: str


class Batch:
    """What handling one raw envelope decided, before any of it is applied."""

    def __init__(self, stage: VisitorsStage, partition: int, offset: int) -> None:
        self.stage = stage
        self.partition = partition
        self.entry = Entry(offset)
        self.visitors: dict[bytes, Visitor] = {}   # key → new entry
        self.counters: dict[bytes, int] = {}       # quota counter → new count
        self.updates: dict[bytes, ProfileUpdate] = {}  # profile key → folded update
        # for the metrics, counted once the batch is applied
        self.endpoints: Counter[str] = Counter()
        self.projects: Counter[str] = Counter()   # actions by project
        self.duplicates = 0
        self.opened = 0                              # visits opened minus closed
        self.closed = 0                              # visits closed by a later request
        self.dead_letters = 0
        self.newest_ms = 0

    def visitor(self, key: bytes) -> Visitor | None:
        found = self.visitors.get(key)
        return found if found is not None else self.stage.visitors.get(key)

    def count(self, counter: bytes) -> None:
        current = self.counters.get(counter)
        if current is None:
            current = self.stage.counters.get(counter) or 0
        self.counters[counter] = current + 1

    def update(self, project: str, profile: str) -> ProfileUpdate:
        key = scoped_key(project, profile)
        found = self.updates.get(key)
        if found is None:
            found = self.updates[key] = ProfileUpdate(project, profile,
                                                      [self.partition, self.entry.offset])
        return found

    def message(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.entry.messages.append((topic, key, value))

    def dead(self, index: int | None, exc: BaseException, key: bytes | None,
             value: bytes | None) -> None:
        log.warning("dead letter from %s[%s]@%s#%s: %r", self.stage.topics.raw, self.partition,
                    self.entry.offset, index, exc)
        self.dead_letters += 1
        self.message(self.stage.topics.deadletter, key, DeadLetter(
            "record", f"{type(exc).__name__}: {exc}", self.stage.topics.raw, self.partition,
            self.entry.offset, index, key, value).to_json())

    def close(self) -> Entry:
        """The journal entry: the lines and messages gathered, the final value of every key
        written, the folded profile updates."""
        entry = self.entry
        entry.records += [(self.stage.topics.profile_updates, update.key,
                           msgpack.packb(update.to_obj())) for update in self.updates.values()]
        entry.writes += [("visitors", key, encode_visitor(value))
                         for key, value in self.visitors.items()]
        entry.writes += [("counters", key, value) for key, value in self.counters.items()]
        return entry


class VisitorsStage:
    def __init__(self, visitors: TableState, counters: TableState, journal: Journal,
                 daylog: DayLogWriter, outbound: Outbound, metrics: WorkerMetrics,
                 names: Topics) -> None:
        self.visitors = visitors
        self.counters = counters  # quota counters: project \n month \n partition → actions
        self.journal = journal
        self.daylog = daylog
        self.outbound = outbound
        self.metrics = metrics
        self.topics = names
        self.deadlines = DeadlineIndex()   # an index of the visitors table, rebuilt from it
        self.stream_ms: dict[int, int] = {}  # partition → newest receipt time decided
        self._positions: dict[int, int] = {}  # partition → position, once recovered
        self._counts_sent: dict[bytes, int] = {}  # quota counter → count last sent
        self._checked: set[str] = set()  # project names already checked (check_name)
        self.retention: dict[str, int] = {}  # project → days it keeps its day logs
        self._retained_at: dict[int, int] = {}  # partition → when retention last ran (ms)

    # -- raw envelopes -------------------------------------------------------------------------

    def position(self, partition: int) -> int:
        """The offset of the last raw envelope decided in ``partition`` (-1: none). The first
        call after a start or a rebalance completes the last envelope's lines, should a crash
        have stopped them halfway."""
        known = self._positions.get(partition)
        if known is not None:
            return known
        last = self.journal.last(partition)
        if last is not None:
            self.daylog.write(partition, last.offset, last.lines)
            position = last.offset
        else:  # logs written before the journal existed, or none at all
            position = self.daylog.recover_position(partition)
        self._positions[partition] = position
        return position

    def handle_raw(self, partition: int, offset: int, value: bytes) -> None:
        """Decide, journal and apply one raw envelope (or apply its entry again). An OSError
        leaves everything as it was, or as the journal can complete: retry the same call."""
        if offset <= self.position(partition):
            entry = self.journal.find(partition, offset)
            if entry is None:
                log.warning("raw %s@%s was handled before, but its journal entry is gone: its "
                            "messages are not sent again", partition, offset)
                return
            self._apply(partition, entry, again=True)
            self.metrics.replayed += 1
            return
        batch = self.decide(partition, offset, value)
        self.journal.append(partition, batch.entry)
        self._positions[partition] = offset
        self._apply(partition, batch.entry, again=False)
        self._account(batch)

    def decide(self, partition: int, offset: int, value: bytes) -> Batch:
        """What an envelope makes, decided against the tables; changes nothing."""
        batch = Batch(self, partition, offset)
        try:
            items = envelope.unpack(value)
        except envelope.EnvelopeError as exc:
            batch.dead(None, exc, None, value)
            items = []
        for index, item in enumerate(items):
            try:
                self._record(batch, index, RawRecord.from_obj(item))
            except Exception as exc:  # a record's own fault; the envelope goes on
                batch.dead(index, exc, None, msgpack.packb(item))
        batch.close()
        return batch

    def _record(self, batch: Batch, index: int, raw: RawRecord) -> None:
        if raw.project not in self._checked:  # it becomes a folder: refused before anything
            self._checked.add(check_name(raw.project))
        visitor_key = raw.visitor_key or "cookie:tp" + raw.id.replace("-", "")
        key = scoped_key(raw.project, visitor_key)
        entry = batch.visitor(key)
        if entry is not None and raw.id in entry.seen:  # a replay (spool, retry)
            batch.duplicates += 1
            return
        parts = split(raw.params())
        sent, visitor = parts.builtins, parts.visitor
        idptnc = sent.get("idptnc")
        if (raw.endpoint == Endpoint.CE and idptnc and entry is not None
                and str(idptnc) in entry.recent):
            batch.duplicates += 1  # a client's retry of an action it sent (SPEC §9)
            return
        ids = identifiers_of({"cv_id": visitor.get("id"), "id": sent.get("id"),
                              "cv_email": visitor.get("email"), "email": sent.get("email"),
                              "cookie": sent.get("cookie") if raw.visitor_key
                              else visitor_key[len("cookie:"):]})
        when = event_time(sent.get("timestamp"), raw.received_ms)
        decision = identity.resolve_visitor(raw.project, visitor_key,
                                            entry.state if entry else None, ids, when.ms)
        current = entry.visit if entry else None
        visit, started, ended, records = current, False, False, []
        if raw.endpoint != Endpoint.IDENTIFY:
            step = visits.next_visit(
                current, raw.received_ms, visits.timeout_ms(sent.get("timeout")),
                is_action=raw.endpoint == Endpoint.CE, new_visit_id="v" + raw.id.replace("-", ""),
                properties=parts.visit)
            if step.ended is not None:
                ended = True
                records.append(_visit_record(ENDED, raw.project, visitor_key,
                                             decision.profile, step.ended))
            if step.started and step.visit is not None:
                records.append(_visit_record(STARTED, raw.project, visitor_key,
                                             decision.profile, step.visit))
            visit, started = step.visit, step.started

        recent = entry.recent if entry else {}
        record = build_record(
            Context(raw.id, raw.project, raw.endpoint, raw.received_ms, raw.ip, raw.user_agent,
                    decision.profile, visitor_key, not raw.visitor_key,
                    visit.id if visit else None, when,
                    updates=recent.get(str(idptnc)) if idptnc else None,
                    over_quota=raw.over_quota,
                    visit_properties=visit.properties if visit else None),
            parts, raw.referer, raw.language)
        action = orjson.dumps(record)  # a value orjson refuses is this record's fault
        day = day_of(raw.received_ms)
        line = lines.encode(action, batch.partition, batch.entry.offset, index)
        if raw.endpoint == Endpoint.CE:
            recent = remember_action(recent, idptnc, raw.id)

        # Nothing below can fail: the record's decisions join the batch together.
        # what a timeline can be asked by, in a fixed order (a set's depends on the process)
        names = list(dict.fromkeys((visitor_key, *ids.names())))
        batch.entry.lines.append(lines.LogLine(
            raw.project, day, index, line, day_of(when.ms),
            lines.Indexed(decision.profile, when.ms, raw.endpoint, names)))
        if raw.endpoint in ACTION_TOPIC:
            batch.message(self.topics.actions, key, action)
        for visit_record in records:
            batch.message(self.topics.visits, key, visit_record)
        batch.opened += int(visit is not None) - int(current is not None)
        batch.closed += int(ended)
        batch.update(raw.project, decision.profile).add(
            when.ms, id=ids.id, email=ids.email, cookie=ids.cookie,
            properties=visitor, actions=int(raw.endpoint == Endpoint.CE), visits=int(started))
        for link in decision.links:
            batch.entry.records.append((self.topics.links, link.key,
                                        msgpack.packb(link.to_obj())))
        if raw.endpoint == Endpoint.CE:
            batch.count(f"{raw.project}\n{month_of(raw.received_ms)}\n"
                        f"{batch.partition}".encode())
        batch.visitors[key] = Visitor(
            decision.state, visit, recent,
            dedupe.remember(entry.seen if entry else {}, raw.id, raw.received_ms),
            batch.partition, entry.version + 1 if entry else 1)
        batch.endpoints[raw.endpoint] += 1
        if raw.endpoint == Endpoint.CE:
            batch.projects[raw.project] += 1
        batch.newest_ms = max(batch.newest_ms, raw.received_ms)

    def _apply(self, partition: int, entry: Entry, again: bool) -> None:
        """Lines first (an OSError here is retried: the entry is journaled), then the tables,
        then the messages."""
        self.daylog.write(partition, entry.offset, entry.lines)
        for table, key, data in entry.writes:
            if table == "visitors":
                value = decode_visitor(data)
                if again and not _newer_visitor(value, self.visitors.get(key)):
                    continue
                self.visitors.put(key, value, partition, data)
                if value.visit is not None:
                    self.deadlines.push(partition, value.visit.deadline_ms, key)
            elif not again or data > (self.counters.get(key) or 0):  # a counter only grows
                self.counters.put(key, data, partition)
        for topic, key, value in entry.messages:
            self.outbound.message(topic, key, value)
        for topic, key, item in entry.records:
            self.outbound.record(topic, key, item)

    def _account(self, batch: Batch) -> None:
        metrics = self.metrics
        metrics.records.update(batch.endpoints)
        metrics.actions.update(batch.projects)
        metrics.duplicates += batch.duplicates
        metrics.dead_letters += batch.dead_letters
        metrics.visits_closed += batch.closed
        metrics.visit_opened(batch.partition, batch.opened)
        if batch.newest_ms:
            self.stream_ms[batch.partition] = max(batch.newest_ms,
                                                  self.stream_ms.get(batch.partition, 0))

    # -- ticks and rebinds ---------------------------------------------------------------------

    def retention_changed(self, project: str, days: int | None) -> None:
        """The registry says how long ``project`` keeps its day logs (None: removed)."""
        if days is None:
            self.retention.pop(project, None)
        else:
            self.retention[project] = days
        self._retained_at.clear()  # applied at the next tick, not in an hour

    def handle_tick(self, partition: int, now_ms: int, catching_up: bool) -> None:
        """Send this partition's changed action counts, apply the projects' retention (at
        most hourly), and close the visits whose deadline passed (unless the partition is
        still reading a backlog that may extend them)."""
        self._send_counts(partition)
        if now_ms - self._retained_at.get(partition, -RETENTION_EVERY_MS) >= \
                RETENTION_EVERY_MS:
            self._retained_at[partition] = now_ms
            self._apply_retention(partition, now_ms)
        if not self.deadlines.has(partition):  # first tick since start or rebalance
            open_visits = [(entry.visit.deadline_ms, key) for key, entry in self.visitors.items()
                           if entry.partition == partition and entry.visit is not None]
            self.deadlines.rebuild(partition, open_visits)
            self.metrics.open_visits[partition] = len(open_visits)
        if catching_up:
            return
        for key in self.deadlines.due(partition, now_ms):
            entry = self.visitors.get(key)
            if entry is None or entry.visit is None:
                continue  # closed meanwhile: a stale index entry
            if visits.is_expired(entry.visit, now_ms):  # else it was extended: indexed again
                project, visitor_key = key.decode().split("\n", 1)
                self.outbound.message(self.topics.visits, key, _visit_record(
                    ENDED, project, visitor_key, entry.state.profile, entry.visit))
                self.visitors.put(key, Visitor(entry.state, None, entry.recent, entry.seen,
                                               entry.partition, entry.version + 1), partition)
                self.metrics.visits_closed += 1
                self.metrics.visit_opened(partition, -1)

    def _apply_retention(self, partition: int, now_ms: int) -> None:
        """Remove this partition's day logs that are past their project's retention (each
        worker its own partitions' files: no two workers touch one file)."""
        for project, days in list(self.retention.items()):
            expired = retention.expired_days(self.daylog.days(project), now_ms, days)
            if not expired:
                continue
            removed = self.daylog.remove(project, partition, expired)
            if removed:
                self.metrics.retention_removed += removed
                log.info("retention of %s (%d days): removed partition %d's day logs of %s",
                         project, days, partition, ", ".join(expired))

    def handle_rebinds(self, partition: int, value: bytes) -> None:
        for item in envelope.unpack(value):
            answer = Rebind.from_obj(item)
            key = answer.key
            entry = self.visitors.get(key)
            rebound = identity.rebind(entry.state if entry else None, answer.link,
                                      answer.answer)
            if entry is not None and rebound is not None:
                self.visitors.put(key, Visitor(rebound, entry.visit, entry.recent, entry.seen,
                                               entry.partition, entry.version + 1), partition)

    def _send_counts(self, partition: int) -> None:
        """This partition's changed action counts (on ticks: at most once a second)."""
        for key, count in list(self.counters.items()):
            project, month, counted_in = key.decode().split("\n")
            if int(counted_in) == partition and self._counts_sent.get(key) != count:
                count_record = QuotaCount(project, month, partition, count)
                self.outbound.record(self.topics.quota_counts, count_record.key,
                                     msgpack.packb(count_record.to_obj()))
                self._counts_sent[key] = count

    def sync(self) -> None:
        """fsync the journal and the day logs written since the last call: after it, what
        faust commits is on disk (a power loss costs only what was not committed)."""
        self.journal.sync()
        self.daylog.sync()

    def forget(self, partitions: list[int]) -> None:
        """After a rebalance: positions and the deadline index are recovered again."""
        for partition in partitions:
            self._positions.pop(partition, None)
        self.journal.forget(partitions)
        self.daylog.forget()
        self.deadlines.forget()
        self.metrics.open_visits.clear()


def _visit_record(kind: str, project: str, visitor_key: str, profile: str,
                  visit: visits.Visit) -> bytes:
    return VisitRecord(kind, project, visitor_key, profile, visit.id, visit.start_ms,
                       visit.last_ms, visit.actions, visit.properties).to_json()


def _newer_visitor(replayed: Visitor, current: Visitor | None) -> bool:
    """Whether a journaled visitor entry should be applied again over what the table holds:
    a later write of the same key (a tick's, a rebind's: records not read again) must not be
    undone, and an entry counts its writes."""
    return current is None or replayed.version > current.version
