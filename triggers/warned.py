"""The ingestion warnings the triggers service writes: a webhook given up (``webhook_failed``)
and a firing or an action dead-lettered (``dead_letter``), each beside its dead letter, with
the event id of the action that fired it (a firing's id is ``<event id>/<rule>``).

Within the service's budget (``runtime.warning_budget``: a receiver that is down makes counts,
not a record per firing), through the service's writer (acknowledged by all replicas), to the
project's partition of ``warnings``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from runtime.warning_budget import WarningBudget
from schemas import topics
from schemas.firing import Firing
from schemas.partitioning import partition_for
from schemas.warning import Kind, Service, sample
from triggers.writer import Writer


class TriggerWarnings:
    def __init__(self, writer: Writer, partitions: int, budget: WarningBudget,
                 clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self.partitions = partitions
        self.budget = budget
        self.clock = clock

    async def given_up(self, firing: Firing, why: str) -> None:
        """A firing dead-lettered: its webhook failed (or was refused), or its JS action can
        never reach the visitor."""
        rule = firing.rule
        kind = Kind.WEBHOOK_FAILED if rule.webhook else Kind.DEAD_LETTER
        what = f"webhook {rule.webhook}" if rule.webhook else "JS action"
        await self._write(rule.project, kind, f"trigger {rule.name}: {what}: {why}",
                          firing.id.rsplit("/", 1)[0],
                          lambda: sample(f"{firing.id} {rule.webhook or rule.js or ''}"))

    async def unreadable(self, key: bytes | None, value: bytes | None, error: str) -> None:
        """An action the service could not read: under its project (its key's first line)
        when that can be read."""
        project = (key or b"").split(b"\n", 1)[0].decode("utf-8", "replace")
        await self._write(sample(project, 128), Kind.DEAD_LETTER,
                          f"an action the triggers service cannot read: {error}", "",
                          lambda: sample(repr((value or b"")[:200])))

    async def _write(self, project: str, kind: str, reason: str, event_id: str,
                     made: Callable[[], str]) -> None:
        warning = self.budget.record(Service.TRIGGERS, project, kind, reason,
                                     int(self.clock() * 1000), made, event_id)
        if warning is None:
            return
        await self.writer.send(topics.WARNINGS, warning.key, warning.to_json(),
                               partition_for(warning.key, self.partitions))
