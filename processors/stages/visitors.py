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
from dataclasses import dataclass

import msgpack

from logstore import retention
from processors import identity, visits
from processors.daylog import DayLogWriter
from processors.deadlines import DeadlineIndex
from processors.enrichment import Enrichment
from processors.journal import Entry, Journal
from processors.metrics import WorkerMetrics
from processors.outbound import Outbound
from processors.stages.batch import Batch, visit_record
from processors.stages.visitor import Visitor, decode_visitor, newer
from processors.state import TableState
from processors.warn import Warner
from runtime import compacted
from schemas import envelope
from schemas.identity import Rebind
from schemas.project import check_name
from schemas.quota import QuotaCount
from schemas.raw import RawRecord, decode_records
from schemas.visit import ENDED

log = logging.getLogger(__name__)

RETENTION_EVERY_MS = 3_600_000  # how often a partition's retention is applied (and at a start)


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


class VisitorsStage:
    def __init__(self, visitors: TableState, counters: TableState, journal: Journal,
                 daylog: DayLogWriter, outbound: Outbound, metrics: WorkerMetrics,
                 names: Topics, warner: Warner) -> None:
        self.visitors = visitors
        self.counters = counters  # quota counters: project \n month \n partition → actions
        self.journal = journal
        self.daylog = daylog
        self.outbound = outbound
        self.metrics = metrics
        self.topics = names
        self.warner = warner  # ingestion warnings, journaled with the envelope's messages
        self.deadlines = DeadlineIndex()   # an index of the visitors table, rebuilt from it
        self.stream_ms: dict[int, int] = {}  # partition → newest receipt time decided
        self._positions: dict[int, int] = {}  # partition → position, once recovered
        self._counts_sent: dict[bytes, int] = {}  # quota counter → count last sent
        self._checked: set[str] = set()  # project names already checked (check_name)
        self.retention: dict[str, int] = {}  # project → days it keeps its day logs
        self._retained_at: dict[int, int] = {}  # partition → when retention last ran (ms)
        # browsers, devices, locations and each project's privacy (set by processors.pipeline)
        self.enrichment = Enrichment.none()

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
        self._apply(partition, batch.entry, again=False, decided=batch.visitors)
        self._account(batch)

    def decide(self, partition: int, offset: int, value: bytes) -> Batch:
        """What an envelope makes, decided against the tables; changes nothing."""
        batch = Batch(self, partition, offset)
        records = decode_records(value)  # every item a record: one call, in C
        if records is not None:
            for index, record in enumerate(records):
                try:
                    batch.add(index, record)
                except Exception as exc:  # a record's own fault; the envelope goes on
                    batch.dead(index, exc, None, record.to_bytes())
        else:  # taken item by item, so that a bad one is a dead letter of its own
            try:
                items = envelope.unpack(value)
            except envelope.EnvelopeError as exc:
                batch.dead(None, exc, None, value)
                items = []
            for index, item in enumerate(items):
                try:
                    batch.add(index, RawRecord.from_obj(item))
                except Exception as exc:
                    batch.dead(index, exc, None, msgpack.packb(item))
        batch.close()
        return batch

    def checked(self, project: str) -> str:
        """``project``, refused (``ProjectError``) if it could not be a folder name: it
        becomes one."""
        if project not in self._checked:
            check_name(project)
            self._checked.add(project)
        return project

    def _apply(self, partition: int, entry: Entry, again: bool,
               decided: dict[bytes, Visitor] | None = None) -> None:
        """Lines first (an OSError here is retried: the entry is journaled), then the tables,
        then the messages. ``decided``: the visitor values the entry's writes encode, when
        they are at hand (not read back from the journal)."""
        self.daylog.write(partition, entry.offset, entry.lines)
        for table, key, data in entry.writes:
            if table == "visitors":
                value = decided[key] if decided is not None else decode_visitor(data)
                if again and not newer(value, self.visitors.get(key)):
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
        compacted.apply(self.retention, project, days)
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
            open_visits = [(entry.visit.deadline_ms, key)
                           for key, entry in self.visitors.items(partition)
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
                self.outbound.message(self.topics.visits, key, visit_record(
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

    def handle_rebind(self, partition: int, item: object) -> None:
        """One decoded item of a rebinds envelope."""
        answer = Rebind.from_obj(item)
        key = answer.key
        entry = self.visitors.get(key)
        rebound = identity.rebind(entry.state if entry else None, answer.link, answer.answer)
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
