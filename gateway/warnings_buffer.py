"""The ingestion warnings of one gateway process, held in memory until a task sends them.

A request the gateway refuses for its project (401, 403) or logs over its quota (402) is an
ingestion warning (``schemas.warning``); so is a spooled record Kafka refuses for good. Noting
one never waits and never fails a request: the budget (``runtime.warning_budget``) decides at
once whether it becomes a record or a count, its sample is made only then, and it joins a
bounded buffer (``MAX_HELD``: past it a warning is counted as dropped). ``run`` sends what is
held every ``FLUSH_EVERY_S`` through the publisher's producer, each to the partition of its
project (``schemas.partitioning``, as the processors send theirs), and keeps it for the next
round while Kafka is away. What is held when the gateway stops is sent once more, not waited
for: a warning is advice, the requests were answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError

from runtime.warning_budget import WarningBudget
from schemas.partitioning import partition_for
from schemas.warning import IngestionWarning, Service

log = logging.getLogger(__name__)

MAX_HELD = 1000
FLUSH_EVERY_S = 0.5


class WarningBuffer:
    def __init__(self, topic: str, partitions: int, budget: WarningBudget | None = None,
                 clock: Callable[[], float] = time.time, max_held: int = MAX_HELD) -> None:
        self.topic = topic
        self.partitions = partitions
        self.budget = budget if budget is not None else WarningBudget()
        self.clock = clock
        self.held: deque[IngestionWarning] = deque()
        self.max_held = max_held
        self.dropped = 0  # recorded warnings the buffer had no room for
        self.sent = 0

    def note(self, project: str, kind: str, reason: str, event_id: str,
             sample: Callable[[], str]) -> None:
        """Count a warning and, within the budget and the buffer's room, hold it (``sample``
        is asked only then)."""
        if len(self.held) >= self.max_held:  # counted, and lost for want of room
            if self.budget.admit(project, kind, int(self.clock() * 1000)) is not None:
                self.dropped += 1
            return
        warning = self.budget.record(Service.GATEWAY, project, kind, reason,
                                     int(self.clock() * 1000), sample, event_id)
        if warning is not None:
            self.held.append(warning)

    async def flush(self, producer: Any) -> int:
        """Send what is held (None: Kafka is away, keep it); the number sent. After a Kafka
        error the whole batch is kept, so a warning already sent may be sent again: warnings
        are read by people, and one twice is better than one lost."""
        if producer is None or not self.held:
            return 0
        batch = list(self.held)
        self.held.clear()
        try:
            deliveries = [await producer.send(
                self.topic, warning.to_json(), key=warning.key,
                partition=partition_for(warning.key, self.partitions)) for warning in batch]
            await asyncio.gather(*deliveries)
        except KafkaError as exc:
            log.warning("could not send %d ingestion warning(s), keeping them: %r", len(batch),
                        exc)
            room = self.max_held - len(self.held)
            self.held.extendleft(reversed(batch[:room]))
            self.dropped += max(0, len(batch) - room)
            return 0
        self.sent += len(batch)
        return len(batch)

    async def run(self, producer: Callable[[], Any], every_s: float = FLUSH_EVERY_S) -> None:
        """Flush every ``every_s`` until cancelled; once more on the way out."""
        try:
            while True:
                await asyncio.sleep(every_s)
                try:
                    await self.flush(producer())
                except Exception:  # anything but Kafka's: logged, and the next round tries
                    log.exception("sending ingestion warnings failed")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(producer()), timeout=2)
