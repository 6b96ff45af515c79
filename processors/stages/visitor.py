"""A visitor as the visitors table holds it: one device of a project, keyed by its visitor
key (``schemas.identity.scoped_key``), in the raw partition its requests arrive in. Stored and
sent to the table's changelog as a msgpack array (``encode_visitor``); values written as JSON
before the table held msgpack still read.
"""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import orjson

from processors import identity, visits


class Visitor(msgspec.Struct, frozen=True, gc=False):
    """A visitors-table value: who the device is, its open visit, its recent client action
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
        return {"state": msgspec.structs.asdict(self.state),
                "visit": msgspec.structs.asdict(self.visit) if self.visit else None,
                "recent": self.recent, "partition": self.partition, "v": self.version}


def encode_visitor(visitor: Visitor) -> bytes:
    state, visit = visitor.state, visitor.visit
    return msgpack.packb([state.profile, state.id, state.email,
                          None if visit is None else [visit.id, visit.start_ms, visit.last_ms,
                                                      visit.deadline_ms, visit.actions,
                                                      visit.properties],
                          visitor.recent, visitor.seen, visitor.partition, visitor.version])


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


def newer(replayed: Visitor, current: Visitor | None) -> bool:
    """Whether a journaled visitor value should be applied again over what the table holds:
    a later write of the same key (a tick's, a rebind's: records not read again) must not be
    undone, and a value counts its writes."""
    return current is None or replayed.version > current.version
