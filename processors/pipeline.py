"""The four stages over their tables, with no faust and no Kafka: what a worker runs.

``Stages`` wires the visitors, identities, profiles and quotas stages to their tables
(``processors.state``), the outbound batching, the journal, the day logs and the commit order
(``processors.checkpoint``). ``processors.worker`` builds one over faust's tables and Kafka;
tests and benchmarks build one over dicts and a transport of their own: it is their public way
in. ``STATE`` says how each table's values are stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack

from processors.checkpoint import Checkpoint
from processors.daylog import DayLogWriter
from processors.enrichment import Enrichment
from processors.journal import Journal
from processors.metrics import WorkerMetrics
from processors.outbound import Outbound, Transport
from processors.stages.identities import IdentitiesStage, decode_owner, encode_owner
from processors.stages.profiles import ProfilesStage
from processors.stages.quotas import QuotasStage
from processors.stages.visitor import decode_visitor, encode_visitor
from processors.stages.visitors import Topics, VisitorsStage
from processors.state import TableState
from processors.warn import Warner
from runtime.settings import Settings
from schemas import profile, topics


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


async def _nothing_in_flight() -> None:
    """A transport that hands messages over at once (tests, benchmarks) has none in flight."""


class Stages:

    def __init__(self, settings: Settings, transport: Transport,
                 stores: dict[str, Any] | None = None, changelogs: dict[str, str] | None = None,
                 deliver: Callable[[], Awaitable[None]] = _nothing_in_flight,
                 persisted: Callable[[str, int, int], None] = lambda t, p, o: None,
                 enrichment: Enrichment | None = None) -> None:
        """``enrichment``: what derives browsers, devices and locations (by default loaded
        now, with ``settings.city_database``; ``Enrichment.none()`` derives nothing)."""
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
        warner = Warner(t(topics.WARNINGS), self.metrics.warnings)
        self.visitors = VisitorsStage(
            self.tables["visitors"], self.tables["quota_counts"],
            Journal(processors_dir / "journal"), daylog,
            self.outbound, self.metrics,
            Topics(t(topics.ACTIONS), t(topics.VISITS), t(topics.LINKS),
                   t(topics.PROFILE_UPDATES), t(topics.QUOTA_COUNTS), t(topics.DEADLETTER),
                   t(topics.RAW)), warner)
        self.identities = IdentitiesStage(self.tables["identities"], self.outbound,
                                          self.metrics, t(topics.MERGES), t(topics.REBINDS),
                                          t(topics.PROFILE_UPDATES), daylog, warner)
        self.profiles = ProfilesStage(self.tables["profiles"], self.outbound, self.metrics,
                                      t(topics.PROFILE_UPDATES))
        self.quotas = QuotasStage(self.tables["quota_totals"], self.outbound, t(topics.QUOTA))
        self.checkpoint = Checkpoint(list(self.tables.values()), self.outbound,
                                     self.visitors.sync, deliver, persisted)
        self.enrichment = enrichment if enrichment is not None else Enrichment.load(
            Path(settings.city_database) if settings.city_database else None)
        self.visitors.enrichment = self.enrichment

    async def commit(self) -> None:
        """Make what was handled durable, in the order that survives a crash
        (``processors.checkpoint``); faust commits the offsets after it."""
        await self.checkpoint.run()

    def close(self) -> None:
        """Close the files the stages hold open (the journal, the day logs)."""
        self.visitors.journal.close()
        self.visitors.daylog.close()
        self.enrichment.close()
