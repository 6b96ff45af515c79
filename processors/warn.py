"""The ingestion warnings a worker writes: what a stage changed or refused of what a sender
sent (``schemas.warning``), within the worker's budget (``runtime.warning_budget``).

The stages decide; this module only words and encodes what they decided: an unusable or
future timestamp and a device that switched profile because two ids met (the visitors stage,
``warn_request``), an email owned by a profile with another id (the identities stage,
``warn_link``), a record dead-lettered (``warn_dead``). A warning is made only once the budget
admits it, so a flood costs a counter, not a sample. The visitors stage puts what it returns
in the envelope's journal entry with its other messages (a replay sends them again, byte for
byte); the others hand it to the outbound batching. Each is keyed by project, one message to
the ``warnings`` topic.
"""

from __future__ import annotations

from collections.abc import Callable

import msgpack

from processors import timestamps
from processors.identity import VisitorDecision, VisitorState
from runtime.warning_budget import WarningBudget
from schemas.identifiers import Identifiers
from schemas.identity import Link
from schemas.project import ProjectError, check_name
from schemas.raw import RawRecord, SchemaError
from schemas.warning import Kind, Service, request_sample, sample

Message = tuple[str, bytes, bytes]  # topic, key, value


class Warner:
    def __init__(self, topic: str, budget: WarningBudget) -> None:
        self.topic = topic
        self.budget = budget

    def warn_request(self, raw: RawRecord, timestamp: object, time: timestamps.EventTime,
                     decision: VisitorDecision, before: VisitorState | None,
                     ids: Identifiers) -> list[Message]:
        """An action's timestamp replaced or flagged, a device switched for want of a merge."""
        made = []
        why = timestamps.adjustment(timestamp, time, raw.received_ms)
        if why is not None:
            kind = Kind.TIMESTAMP_FUTURE if time.future else Kind.TIMESTAMP_REPLACED
            made.append(self._of_raw(raw, kind, why))
        if decision.switched:
            what = "id" if before is not None and before.id and ids.id else "email"
            made.append(self._of_raw(raw, Kind.MERGE_REFUSED, (
                f"the device was seen with another {what}: two {what}s never merge, so it "
                f"switched to the profile of the {what} it sends now")))
        return [message for message in made if message is not None]

    def warn_link(self, link: Link, reason: str) -> Message | None:
        """A link that met a profile it may not merge with (no event id: a link carries none;
        the visitor key and the identifier say whose)."""
        return self._made(link.project, Kind.MERGE_REFUSED, reason, link.at_ms,
                          lambda: sample(f"{link.visitor_key} → {link.identifier}"))

    def warn_dead(self, value: bytes | None, error: BaseException | str, where: str,
                  at_ms: int) -> Message | None:
        """A record dead-lettered: warned under its project when its bytes are a raw record of
        one (else under none, with its event id when it has one)."""
        try:
            raw = RawRecord.from_bytes(value or b"")
        except SchemaError:
            return self._made("", Kind.DEAD_LETTER, f"{where}: {_said(error)}", at_ms,
                              lambda: sample(repr((value or b"")[:120])))
        try:
            project = check_name(raw.project)
        except ProjectError:  # a name that is no project's: counted under none
            project = ""
        return self._of_raw(raw, Kind.DEAD_LETTER, f"{where}: {_said(error)}", project)

    def warn_dead_message(self, value: bytes | None, error: BaseException, where: str,
                          at_ms: int, raw: bool) -> list[Message]:
        """A message dead-lettered whole by the guard: for a raw envelope (``raw``), a warning
        per record it holds; else (or when it cannot be read) one."""
        records: list[bytes] = []
        if raw:
            try:
                items = msgpack.unpackb(value or b"")
            except Exception:  # not an envelope at all
                items = None
            if isinstance(items, list):
                records = [msgpack.packb(item) for item in items]
        made = [self.warn_dead(record, error, where, at_ms) for record in records or [value]]
        return [message for message in made if message is not None]

    def _of_raw(self, raw: RawRecord, kind: str, reason: str,
                project: str | None = None) -> Message | None:
        return self._made(raw.project if project is None else project, kind, reason,
                          raw.received_ms,
                          lambda: request_sample(raw.endpoint, raw.query, raw.form), raw.id)

    def _made(self, project: str, kind: str, reason: str, at_ms: int,
              made: Callable[[], str], event_id: str = "") -> Message | None:
        warning = self.budget.record(Service.PROCESSORS, project, kind, reason, at_ms, made,
                                     event_id)
        return None if warning is None else (self.topic, warning.key, warning.to_json())


def _said(error: BaseException | str) -> str:
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"
