"""The partitions of ``firings`` this service owns, and which of their firings run.

A partition of ``firings`` goes with the partition of ``actions`` numbered like it. When one
is assigned, what it holds is read (``resume``) and delivered before any of its actions is
handled (``loaded``); those ids are what its uncommitted actions, read again, fire, so they
are not written twice (``fresh``). When it is revoked (``finish``), requests in flight may end
and be recorded; the rest stays pending for the next owner.

Deliveries in flight are bounded (``MAX_DELIVERIES``, all partitions): past that a firing is
not started, it stays pending in ``firings`` and its partition is read again once deliveries
have drained (``reread_deferred``, every few seconds), as is a partition whose held webhooks
were released (``reread``). So memory stays bounded whatever the receivers do.

A firing is started at most once at a time, and never again once finished. Two readers of a
partition could otherwise start one twice: a pass reading it again sees a firing the consumer
has just written and will start once its offset is committed (``fresh`` marks it as the
consumer's), or sees a firing that was finished (tombstoned) after the pass read its end
(finished ones are noted while a pass reads).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field

from runtime import compacted
from runtime.partition import read_partition
from schemas.firing import Firing

log = logging.getLogger(__name__)

MAX_DELIVERIES = 10_000  # firings delivered (or waiting for a retry) at once, all projects
DEFERRED_EVERY_S = 5.0
RECENT_FIRINGS = 100_000  # a processor that crashed sends its last actions again: skip them

Read = Callable[[int], Awaitable[list[Firing]]]
Deliver = Callable[[Firing, asyncio.Event], Awaitable[bool]]


async def read_pending(bootstrap: str, topic: str, partition: int) -> list[Firing]:
    """The firings ``firings[partition]`` holds (each key's last record, not a tombstone)."""
    pending: dict[str, bytes] = {}
    async for record in read_partition(bootstrap, topic, partition):
        compacted.apply(pending, record.key.decode(), record.value)
    if pending:
        log.info("partition %s: resuming %d pending firing(s)", partition, len(pending))
    return [Firing.from_bytes(key, partition, value) for key, value in pending.items()]


@dataclass(eq=False)
class _Owned:
    """One partition while this service owns it."""

    loaded: asyncio.Event = field(default_factory=asyncio.Event)  # its pending are started
    leaving: asyncio.Event = field(default_factory=asyncio.Event)  # going to another owner
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    resumed: set[str] = field(default_factory=set)  # pending when it was assigned
    written: set[str] = field(default_factory=set)  # the consumer starts them after its commit
    finished: set[str] | None = None  # while a pass reads it again: firings finished meanwhile


class PendingFirings:
    def __init__(self, read: Read, deliver: Deliver, counts: MutableMapping[str, int],
                 grace_s: float) -> None:
        """``read``: what a partition of ``firings`` holds; ``deliver``: deliver a firing
        (True: finished, False: left pending); ``grace_s``: how long requests in flight may
        take to end when a partition is revoked."""
        self.read = read
        self.deliver = deliver
        self.counts = counts
        self.grace_s = grace_s
        self._owned: dict[int, _Owned] = {}
        self._deferred: set[int] = set()  # partitions with firings left pending for room
        self._recent: OrderedDict[str, None] = OrderedDict()  # firing ids, oldest first

    @property
    def partitions(self) -> list[int]:
        return list(self._owned)

    @property
    def in_flight(self) -> int:
        return sum(len(owned.running) for owned in self._owned.values())

    # -- partitions coming and going -----------------------------------------------------------

    async def resume(self, partitions: list[int]) -> None:
        """Take newly assigned partitions: start what ``firings`` holds for them."""
        owned = {partition: _Owned() for partition in partitions}
        self._owned.update(owned)
        for partition, mine in owned.items():
            pending = await self.read(partition)
            mine.resumed = {firing.id for firing in pending}
            for firing in pending:
                self.start(firing)
            mine.loaded.set()

    async def loaded(self, partition: int) -> None:
        """Wait until what the partition held when assigned is started (aiokafka may hand out
        its records while ``resume`` still reads)."""
        owned = self._owned.get(partition)
        if owned is not None:
            await owned.loaded.wait()

    async def finish(self, partitions: list[int]) -> None:
        """Give partitions up: webhook requests in flight may end and be recorded (a cut-off
        one would be sent again by the next owner); deliveries waiting for their turn or a
        retry stay pending."""
        leaving = [self._owned[p] for p in partitions if p in self._owned]
        tasks = []
        for owned in leaving:
            owned.leaving.set()
            owned.loaded.set()  # a batch waiting for it goes on, and its commit fails
            tasks.extend(owned.running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=self.grace_s)
        for task in tasks:
            task.cancel()
        for partition in partitions:
            if self._owned.get(partition) in leaving:
                del self._owned[partition]

    # -- the consumer's firings ----------------------------------------------------------------

    def fresh(self, partition: int, firings: Iterable[Firing]) -> list[Firing]:
        """Of the firings a batch of actions made, those to write and start: not pending
        when the partition was assigned, nor made lately (a processor that crashed sends its
        last actions again). They are the consumer's to start (``committed``)."""
        owned = self._owned.get(partition)
        known = owned.resumed if owned is not None else set()
        fresh = [f for f in firings if f.id not in known and f.id not in self._recent]
        for firing in fresh:
            self._recent[firing.id] = None
        while len(self._recent) > RECENT_FIRINGS:
            self._recent.popitem(last=False)
        if owned is not None:
            owned.written.update(firing.id for firing in fresh)
        return fresh

    def committed(self, partition: int, fresh: list[Firing]) -> None:
        """The offsets of the actions ``fresh`` came from are committed: start them."""
        self.not_committed(partition, fresh)
        for firing in fresh:
            self.start(firing)

    def not_committed(self, partition: int, fresh: list[Firing]) -> None:
        """The commit failed: ``fresh`` stay pending in ``firings``, any reader's to start."""
        owned = self._owned.get(partition)
        if owned is not None:
            owned.written.difference_update(firing.id for firing in fresh)

    # -- starting ------------------------------------------------------------------------------

    def start(self, firing: Firing) -> None:
        """Start delivering a firing (it is in ``firings`` already), unless it runs, is the
        consumer's to start, or its partition is not (or no longer) ours. Past
        ``MAX_DELIVERIES`` in flight it is not started: its partition is read again later."""
        owned = self._owned.get(firing.partition)
        if owned is None or owned.leaving.is_set():
            return
        if firing.id in owned.running or firing.id in owned.written:
            return
        if self.in_flight >= MAX_DELIVERIES:
            self._deferred.add(firing.partition)
            self.counts["deferred"] += 1
            return
        task = asyncio.create_task(self._deliver(owned, firing), name=f"deliver {firing.id}")
        owned.running[firing.id] = task
        task.add_done_callback(lambda _: owned.running.pop(firing.id, None))

    async def _deliver(self, owned: _Owned, firing: Firing) -> None:
        if await self.deliver(firing, owned.leaving) and owned.finished is not None:
            owned.finished.add(firing.id)

    def reread(self, partitions: Iterable[int]) -> None:
        """Read these partitions again at the next pass (their held firings may go now)."""
        self._deferred.update(partitions)

    async def reread_deferred(self) -> None:
        """Every few seconds, forever: the partitions whose firings were left pending, read
        again once deliveries have room, and what is pending started."""
        while True:
            await asyncio.sleep(DEFERRED_EVERY_S)
            await self.reread_now()

    async def reread_now(self) -> None:
        """One pass of ``reread_deferred``."""
        if not self._deferred or self.in_flight > MAX_DELIVERIES // 2:
            return
        for partition in sorted(self._deferred):
            self._deferred.discard(partition)
            owned = self._owned.get(partition)
            if owned is None or not owned.loaded.is_set():
                continue  # not ours (its next owner reads it), or `resume` reads it now
            owned.finished = set()
            try:
                pending = await self.read(partition)
            finally:
                finished, owned.finished = owned.finished, None
            if self._owned.get(partition) is not owned:
                continue  # revoked while it was read
            for firing in pending:
                if firing.id not in finished:
                    self.start(firing)
