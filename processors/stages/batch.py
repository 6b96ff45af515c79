"""What one raw envelope decides, before any of it is applied (``processors.stages.visitors``).

``Batch.add`` takes the envelope's requests one by one, each against the tables and what the
requests before it in the envelope decided: is it a repeat, who is it (``processors.identity``),
what does it do to the visit (``processors.visits``), what action does it make
(``processors.actions``). ``Batch.close`` makes the journal entry: the day-log lines and
messages gathered, the final value of every table key written, one profile update per profile.
Nothing here writes a file or sends a message.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import msgpack
import msgspec
import orjson

from logstore import lines
from logstore.layout import day_of
from processors import dedupe, identity, visits
from processors.actions import Decided, Parts, build_record, remember_action, split
from processors.journal import Entry
from processors.stages.visitor import Visitor, encode_visitor
from processors.timestamps import EventTime, event_time
from schemas.deadletter import DeadLetter
from schemas.endpoints import Endpoint
from schemas.identifiers import Identifiers, identifiers_of
from schemas.identity import scoped_key
from schemas.profile import ProfileUpdate
from schemas.quota import month_of
from schemas.raw import RawRecord
from schemas.visit import ENDED, STARTED, VisitRecord

if TYPE_CHECKING:
    from processors.stages.visitors import VisitorsStage

log = logging.getLogger(__name__)

ACTION_TOPIC = frozenset({Endpoint.CE, Endpoint.UPDATE})  # what goes to the actions topic


class Who(msgspec.Struct, frozen=True, gc=False):
    """Who a request is: its identifiers, its event time, and what identity resolution
    decided for its visitor."""
    ids: Identifiers
    time: EventTime
    decision: identity.VisitorDecision


class Batch:
    def __init__(self, stage: VisitorsStage, partition: int, offset: int) -> None:
        self.stage = stage
        self.partition = partition
        self.entry = Entry(offset)
        self.visitors: dict[bytes, Visitor] = {}       # key → its value after this envelope
        self.counters: dict[bytes, int] = {}           # quota counter → new count
        self.updates: dict[bytes, ProfileUpdate] = {}  # profile key → folded update
        # for the metrics, counted once the batch is applied
        self.endpoints: Counter[str] = Counter()
        self.projects: Counter[str] = Counter()   # actions by project
        self.duplicates = 0
        self.opened = 0                              # visits opened minus closed
        self.closed = 0                              # visits closed by a later request
        self.dead_letters = 0
        self.newest_ms = 0

    # -- one request ---------------------------------------------------------------------------

    def add(self, index: int, raw: RawRecord) -> None:
        """Decide the request at ``index``; an exception is the request's own fault (its
        decisions join the batch only once nothing can fail)."""
        project = self.stage.checked(raw.project)
        visitor_key = raw.visitor_key or "cookie:tp" + raw.id.replace("-", "")
        key = scoped_key(project, visitor_key)
        visitor = self.visitors.get(key) or self.stage.visitors.get(key)
        if visitor is not None and raw.id in visitor.seen:  # a replay (spool, retry)
            self.duplicates += 1
            return
        parts = split(raw.params())
        idptnc = parts.builtins.get("idptnc")
        if (raw.endpoint == Endpoint.CE and idptnc and visitor is not None
                and str(idptnc) in visitor.recent):
            self.duplicates += 1  # a client's retry of an action it sent (SPEC §9)
            return
        who = _who(raw, visitor_key, visitor, parts)
        step = _visit_step(raw, visitor, parts)
        visit = step.visit if step is not None else (visitor.visit if visitor else None)
        recent = visitor.recent if visitor else {}
        enriched = self.stage.enrichment.enrich(raw.project, raw.ip, raw.user_agent,
                                                parts.builtins, raw.anonymize_ip, raw.locate)
        action = orjson.dumps(build_record(raw, Decided(
            who.decision.profile, visitor_key, who.time, visit,
            updates=recent.get(str(idptnc)) if idptnc else None), parts, enriched))
        # Nothing below can fail: the request's decisions join the batch together.
        self._log(index, raw, key, visitor_key, who, action)
        self.entry.messages += self.stage.warner.warn_request(
            raw, parts.builtins.get("timestamp"), who.time, who.decision,
            visitor.state if visitor else None, who.ids)
        if step is not None:
            self._visit(raw, key, visitor_key, who.decision.profile, visitor, step,
                        enriched.fields)
        self._profile(raw, who, parts, step, enriched.fields)
        self._remember(raw, key, visitor, who, visit,
                       remember_action(recent, idptnc, raw.id)
                       if raw.endpoint == Endpoint.CE else recent)

    def _log(self, index: int, raw: RawRecord, key: bytes, visitor_key: str, who: Who,
             action: bytes) -> None:
        """The day-log line (with what the timeline index takes), and the action message."""
        line = lines.encode(action, self.partition, self.entry.offset, index)
        # what a timeline can be asked by, in a fixed order (a set's depends on the process)
        names = list(dict.fromkeys((visitor_key, *who.ids.names())))
        self.entry.lines.append(lines.LogLine(
            raw.project, day_of(raw.received_ms), index, line, day_of(who.time.ms),
            lines.Indexed(who.decision.profile, who.time.ms, raw.endpoint, names)))
        if raw.endpoint in ACTION_TOPIC:
            self.message(self.stage.topics.actions, key, action)

    def _visit(self, raw: RawRecord, key: bytes, visitor_key: str, profile: str,
               visitor: Visitor | None, step: visits.VisitDecision,
               derived: dict[str, Any]) -> None:
        """The visit records a request makes: one ended (it had timed out), one started (with
        the request's browser, device and location)."""
        topic = self.stage.topics.visits
        if step.ended is not None:
            self.closed += 1
            self.message(topic, key, visit_record(ENDED, raw.project, visitor_key, profile,
                                                  step.ended))
        if step.started and step.visit is not None:
            self.message(topic, key, visit_record(STARTED, raw.project, visitor_key, profile,
                                                  step.visit, derived))
        self.opened += int(step.visit is not None) - int(
            visitor is not None and visitor.visit is not None)

    def _profile(self, raw: RawRecord, who: Who, parts: Parts,
                 step: visits.VisitDecision | None, derived: dict[str, Any]) -> None:
        """What the request says about its profile (folded per profile), the links identity
        resolution asked for, and the project's action count."""
        ids, is_action = who.ids, raw.endpoint == Endpoint.CE
        self.update(raw.project, who.decision.profile).add(
            who.time.ms, id=ids.id, email=ids.email, cookie=ids.cookie,
            properties=parts.visitor, actions=int(is_action),
            visits=int(step is not None and step.started), seen=derived)
        for link in who.decision.links:
            self.entry.records.append((self.stage.topics.links, link.key,
                                       msgpack.packb(link.to_obj())))
        if is_action:
            self.count(f"{raw.project}\n{month_of(raw.received_ms)}\n"
                       f"{self.partition}".encode())
            self.projects[raw.project] += 1
        self.endpoints[raw.endpoint] += 1
        self.newest_ms = max(self.newest_ms, raw.received_ms)

    def _remember(self, raw: RawRecord, key: bytes, visitor: Visitor | None, who: Who,
                  visit: visits.Visit | None, recent: dict[str, str]) -> None:
        """The visitor's new value: who it is, its visit, the ids it remembers."""
        self.visitors[key] = Visitor(
            who.decision.state, visit, recent,
            dedupe.remember(visitor.seen if visitor else {}, raw.id, raw.received_ms),
            self.partition, visitor.version + 1 if visitor else 1)

    # -- the batch -----------------------------------------------------------------------------

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
        self.message(self.stage.topics.deadletter, key, DeadLetter.for_record(
            exc, self.stage.topics.raw, self.partition, self.entry.offset, key, value,
            index).to_json())
        warned = self.stage.warner.warn_dead(
            value, exc, f"{self.stage.topics.raw}[{self.partition}]@{self.entry.offset}"
            f"#{index}", self.newest_ms or self.stage.stream_ms.get(self.partition, 0))
        if warned is not None:
            self.entry.messages.append(warned)

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


def _who(raw: RawRecord, visitor_key: str, visitor: Visitor | None, parts: Parts) -> Who:
    sent, properties = parts.builtins, parts.visitor
    ids = identifiers_of({"cv_id": properties.get("id"), "id": sent.get("id"),
                          "cv_email": properties.get("email"), "email": sent.get("email"),
                          "cookie": sent.get("cookie") if raw.visitor_key
                          else visitor_key[len("cookie:"):]})
    when = event_time(sent.get("timestamp"), raw.received_ms)
    return Who(ids, when, identity.resolve_visitor(
        raw.project, visitor_key, visitor.state if visitor else None, ids, when.ms))


def _visit_step(raw: RawRecord, visitor: Visitor | None, parts: Parts
                ) -> visits.VisitDecision | None:
    """What the request does to the visit; None for an identify (it does nothing to it)."""
    if raw.endpoint == Endpoint.IDENTIFY:
        return None
    return visits.next_visit(
        visitor.visit if visitor else None, raw.received_ms,
        visits.timeout_ms(parts.builtins.get("timeout")),
        is_action=raw.endpoint == Endpoint.CE, new_visit_id="v" + raw.id.replace("-", ""),
        properties=parts.visit)


def visit_record(kind: str, project: str, visitor_key: str, profile: str,
                 visit: visits.Visit, derived: dict[str, Any] | None = None) -> bytes:
    return VisitRecord(kind, project, visitor_key, profile, visit.id, visit.start_ms,
                       visit.last_ms, visit.actions, visit.properties, derived or {}).to_json()
