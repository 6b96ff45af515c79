"""The quotas stage: each raw partition's action counts in, each project's quota state out.

Visitor partitions count the actions they log per project and month (``stages.visitors``)
and send a ``QuotaCount`` when it changes, keyed by project. Here, in the project's own
partition, ``processors.quotas`` keeps the latest count of every raw partition for the month
(the ``quota_totals`` table) and the total is published with the project's quota to the
compacted ``quota`` topic that gateways follow. When a project's quota changes in the
registry, the state is published again, so raising a quota lifts the 402 within seconds.
"""

from __future__ import annotations

from typing import Any

from processors import quotas
from processors.outbound import Outbound
from processors.state import TableState
from schemas.quota import QuotaCount


class QuotasStage:
    def __init__(self, totals: TableState, outbound: Outbound, quota_topic: str) -> None:
        self.totals = totals
        self.outbound = outbound
        self.quota_topic = quota_topic
        self.project_quotas: dict[str, int | None] = {}  # from the registry topic

    def handle_count(self, partition: int, item: object) -> None:
        """One decoded item of a quota-counts envelope."""
        count = QuotaCount.from_obj(item)
        key = count.key
        total = quotas.add_count(self.totals.get(key), count.month, count.partition,
                                 count.count)
        if total is not None:
            self.totals.put(key, total, partition)
            self._publish(count.project, total)

    def quota_changed(self, project: str, quota: int | None) -> None:
        """The registry says ``project``'s quota is now ``quota``."""
        if self.project_quotas.get(project) == quota:
            return
        self.project_quotas[project] = quota
        total = self.totals.get(project.encode())
        if total is not None:  # this worker holds the project's total
            self._publish(project, total)

    def _publish(self, project: str, total: dict[str, Any]) -> None:
        state = quotas.state(project, total, self.project_quotas.get(project))
        self.outbound.message(self.quota_topic, project.encode(), state.to_bytes())
