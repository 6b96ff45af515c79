"""The identities stage: links in, rebinds, merges and profile merges out.

It reads envelopes of ``Link`` records, keyed by identifier, and keeps who owns each
identifier in the ``identities`` table. For each link ``processors.identity.resolve_link``
says the profile that wins; a merge goes to the public ``merges`` topic and to the merged
profile (which folds itself into the survivor, ``stages.profiles``), and the answer goes back
to the asking visitor's partition as a ``Rebind``; a merge refused (an email owned by a profile
with another id) is an ingestion warning (``processors.warn``). Merges are also logged beside the
project's day logs, for timelines and queries that follow a person across profiles. Links of
one envelope are taken in order, each seeing what the previous ones decided. A replay after
a crash decides the same (the identifier's owner is recorded before the answer leaves), so
repeats are harmless.
"""

from __future__ import annotations

import msgpack

from processors import identity
from processors.daylog import DayLogWriter
from processors.metrics import WorkerMetrics
from processors.outbound import Outbound
from processors.state import TableState
from processors.warn import Warner
from schemas.identity import Link, Rebind
from schemas.profile import MergeInto


def encode_owner(state: identity.IdentityState) -> bytes:
    return msgpack.packb([state.profile, state.has_id])


def decode_owner(data: bytes) -> identity.IdentityState:
    if data[:1] == b"{":  # written as JSON before the table held msgpack
        import orjson

        return identity.IdentityState(**orjson.loads(data))
    return identity.IdentityState(*msgpack.unpackb(data))


class IdentitiesStage:
    def __init__(self, identities: TableState, outbound: Outbound, metrics: WorkerMetrics,
                 merges: str, rebinds: str, profile_updates: str,
                 daylog: DayLogWriter | None = None, warner: Warner | None = None) -> None:
        self.identities = identities
        self.warner = warner  # a merge refused is an ingestion warning
        self.daylog = daylog  # merges are logged beside the day logs (processors.timeline)
        self.outbound = outbound
        self.metrics = metrics
        self.merges, self.rebinds, self.profile_updates = merges, rebinds, profile_updates

    def handle_link(self, partition: int, item: object) -> None:
        """One decoded item of a links envelope."""
        link = Link.from_obj(item)
        decision = identity.resolve_link(self.identities.get(link.key), link)
        self.identities.put(link.key, decision.state, partition)
        if decision.refused is not None and self.warner is not None:
            warned = self.warner.warn_link(link, decision.refused)
            if warned is not None:
                self.outbound.message(*warned)
        merge = decision.merge
        if merge is not None:
            self.metrics.merges += 1
            self.outbound.message(self.merges, merge.key, merge.to_json())
            if self.daylog is not None:
                self.daylog.write_merge(merge, partition)
            into = MergeInto(link.project, merge.source, merge.into)
            self.outbound.record(self.profile_updates, into.key,
                                 msgpack.packb(into.to_obj()))
        rebind = Rebind(link, decision.answer)
        self.outbound.record(self.rebinds, rebind.key, msgpack.packb(rebind.to_obj()))
