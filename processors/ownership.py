"""Which partitions a worker may write: an exclusive ``flock`` per partition, held from the
moment the worker takes the partition until it lets it go.

The journal and the day logs are shared by every worker (one folder, or the compose
deployment's volumes), one file per raw partition, and their design rests on one writer per
partition: the next owner reads the journal to know which envelopes were handled. Kafka's group
does not give that. A worker the coordinator has dropped (no heartbeat for the session timeout:
in issue 21, a worker that could not find the coordinator for a minute after a broker died)
goes on handling the partitions it had, the records it fetched and those it still fetches,
until it next reaches the coordinator; only its offset commits are refused. Meanwhile the group
gave those partitions to others, which read the journal and decided the same envelopes again:
the same lines twice in a day log, the two workers' journal entries interleaved.

So a worker handles a message of partition N only while it holds N's lock (``part-NNN.lock``
beside the journal; every topic a worker reads is co-partitioned with the raw topic, so N is
one partition of each and the lock covers them all):

- after an assignment the first message takes the lock of every partition assigned, in
  ascending order (so that two workers cannot each wait for a lock the other holds), before
  any of them is handled, and only then is the journal read. A lock another worker holds is
  waited for as long as it is held, with a warning every ``warn_every_s``: a partition is
  never written around its lock;
- the worker lets them all go when faust revokes its partitions (once the messages in hand
  are handled and the commit is flushed) and at its next assignment; the kernel lets go of a
  killed worker's. A message of a partition not assigned to the worker (faust can hand one
  over from before a rebalance) is not handled, and its lock is not taken: it is its owner's;
- a worker dropped without knowing keeps its locks, so it stays the one writer until it
  learns (its next rebalance revokes everything). The next owner then reads what it wrote, and
  applies those envelopes again from the journal instead of deciding them again.

``flock`` holds between the processes of one host, and between containers that share a local
volume (one kernel): the deployment docker-compose.yml describes. Workers on several hosts
sharing a network file system need that file system to honour it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from logstore.layout import part_stem

log = logging.getLogger(__name__)

POLL_S = 0.2         # how often a lock held elsewhere is tried again
WARN_EVERY_S = 10.0  # how often a wait for one is logged


class Ownership:
    """The locks of the partitions this worker holds, below ``root`` (the journal's folder).
    ``taken`` is called with the partitions just taken: what was read of their files before
    must be read again."""

    def __init__(self, root: Path, taken: Callable[[list[int]], None] = lambda _: None,
                 poll_s: float = POLL_S, warn_every_s: float = WARN_EVERY_S) -> None:
        self.root = root
        self.taken = taken
        self.poll_s = poll_s
        self.warn_every_s = warn_every_s
        self._fds: dict[int, int] = {}  # partition → the open lock file holding its flock
        self._assigned: list[int] = []
        self._left: set[int] = set()  # unassigned partitions whose messages were left
        self._taking: asyncio.Task[None] | None = None

    def path(self, partition: int) -> Path:
        return self.root / f"{part_stem(partition)}.lock"

    def holds(self, partition: int) -> bool:
        return partition in self._fds

    def assigned(self, partitions: Iterable[int]) -> None:
        """A new assignment: every lock let go, to be taken again in order by ``own``."""
        self.release()
        self._assigned = sorted(set(partitions))
        self._left.clear()

    def revoked(self) -> None:
        """faust revoked every partition: the locks go, and until the next assignment no
        partition is this worker's."""
        self.assigned(())

    def release(self) -> None:
        """Let every lock go; a taking in progress is abandoned."""
        if self._taking is not None and not self._taking.done():
            self._taking.cancel()
        self._taking = None
        for fd in self._fds.values():
            os.close(fd)  # the flock goes with the last descriptor of the open file
        self._fds.clear()

    async def own(self, partition: int) -> bool:
        """True once this worker holds ``partition``'s lock: the first call after an
        assignment takes every assigned partition's, waiting for those held elsewhere. False
        at once for a partition not assigned to this worker now: a message faust handed over
        from before a rebalance, which the partition's owner handles (faust does not commit
        the offsets of a partition it no longer assigns); its lock is not taken."""
        while partition not in self._fds:
            if partition not in self._assigned:
                if partition not in self._left:
                    self._left.add(partition)
                    log.info("partition %d is not this worker's since the last rebalance: "
                             "its messages still in hand are left to its owner", partition)
                return False
            if self._taking is None or self._taking.done():
                self._taking = asyncio.ensure_future(self._take(self._assigned))
            taking = self._taking
            await asyncio.wait([taking])  # not cancelled with it: a new assignment came
            if not taking.cancelled() and taking.exception() is not None:
                raise taking.exception()  # type: ignore[misc]
        return True

    async def _take(self, partitions: list[int]) -> None:
        got: dict[int, int] = {}
        try:
            for partition in partitions:  # ascending
                got[partition] = await self._wait_for(partition)
        except BaseException:
            for fd in got.values():
                os.close(fd)
            raise
        self._fds.update(got)
        self.taken(list(got))

    async def _wait_for(self, partition: int) -> int:
        """The descriptor of ``partition``'s lock file, once its flock is this worker's."""
        started = said = time.monotonic()
        while (fd := self._try(partition)) is None:
            now = time.monotonic()
            if now - said >= self.warn_every_s:
                said = now
                log.warning("partition %d: another worker still holds %s after %.0f s (one "
                            "the group dropped that has not noticed yet, or one finishing its "
                            "revocation); its journal and day logs are left alone until it "
                            "lets go", partition, self.path(partition), now - started)
            await asyncio.sleep(self.poll_s)
        if said > started:
            log.warning("partition %d: its lock is this worker's after %.1f s", partition,
                        time.monotonic() - started)
        return fd

    def _try(self, partition: int) -> int | None:
        """The lock's descriptor if its flock is this worker's now; None while another
        worker holds it, or if the file could not be opened (the disk: tried again too)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path(partition), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("partition %d: its lock file cannot be opened, trying again: %r",
                        partition, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: another open file holds it
            os.close(fd)
            return None
        return fd
