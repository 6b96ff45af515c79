"""The order of a worker's commit, which keeps every table exactly once across a crash.

faust commits a partition's offsets after it awaits its producer's ``flush``, and the worker
runs ``Checkpoint.run`` inside that flush (``processors.worker``). What the stages do is
idempotent when the records that caused it are read again — the journal completes a raw
envelope, watermarks and folds-by-source recognise a profile change, an identifier's recorded
owner decides a link the same way — but only while no state is durable before the outputs
it gates. A profile stored as merged before its ``Fold`` reached Kafka, read again, sends no
``Fold``: the survivor never gets the merged device. So a commit goes:

1. take the tables' changes: the state that everything handled so far made;
2. fsync the journal, the day logs and their index;
3. send every gathered output and wait until Kafka has all of them;
4. send the changelog messages of the changes from 1, and wait until Kafka has them;
5. write those changes to the local store, then record the changelog offsets it now holds
   (faust recovers a table from the changelog after that offset);
6. faust commits the source offsets it chose before it called us.

A crash between two steps leaves each layer behind the one before it — the store behind the
changelog, the changelog behind the outputs, the committed offsets behind everything — so
what is read again finds no state that claims it was already handled while its outputs were
not sent. Records handled while a commit awaits Kafka join the next commit: they stay in the
tables' dirty layer, and their outputs are sent now or at the next flush, never after their
state is stored. ``STEPS`` names the points between steps, where the tests crash a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from processors.outbound import Outbound
from processors.state import TableState

STEPS = ("changes taken", "synced", "outputs delivered", "changelogs delivered",
         "stores written")


class Checkpoint:
    def __init__(self, tables: Sequence[TableState], outbound: Outbound,
                 sync: Callable[[], None], deliver: Callable[[], Awaitable[None]],
                 persisted: Callable[[str, int, int], None] = lambda t, p, o: None) -> None:
        self.tables = tables
        self.outbound = outbound
        self.sync = sync            # fsync what the stages wrote to disk
        self.deliver = deliver      # wait until Kafka has every message handed to the producer
        self.persisted = persisted  # (changelog, partition, offset) now in the store
        self.reached: Callable[[str], None] = lambda step: None  # tests crash here
        self.commits = 0
        self._changelogs = {table.changelog for table in tables}
        self._delivered: dict[tuple[str, int], int] = {}
        self._lock = asyncio.Lock()

    def delivered(self, topic: str, partition: int, offset: int) -> None:
        """The transport's delivery callback: the last offset of a delivered batch."""
        if topic in self._changelogs and offset > self._delivered.get((topic, partition), -1):
            self._delivered[(topic, partition)] = offset

    async def run(self) -> None:
        async with self._lock:  # a second flush waits: step 5 stores only what 4 delivered
            changes = [change for table in self.tables for change in table.changes()]
            self.reached(STEPS[0])
            self.sync()
            self.reached(STEPS[1])
            await self.outbound.flush()
            await self.deliver()
            self.reached(STEPS[2])
            await self.outbound.send_changes(changes)
            await self.deliver()
            self.reached(STEPS[3])
            for table in self.tables:
                table.persist()
            # A delivery reported late is recorded at the next commit: an offset behind the
            # store only makes recovery read a little more; one ahead of it would skip.
            delivered, self._delivered = self._delivered, {}
            for (topic, partition), offset in delivered.items():
                self.persisted(topic, partition, offset)
            self.reached(STEPS[4])
            self.commits += 1
