"""Which open visits may have reached their deadline, without scanning every visitor. Pure.

A min-heap per raw partition of ``(deadline_ms, visitor key)``, pushed every time a visit's
deadline is set. It is an index, not state: entries go stale when a visit is extended or
closed, so whoever pops one checks the visitor's table entry before closing anything. After a
start or a rebalance the heap of a partition is rebuilt once from the table.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator


class DeadlineIndex:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, bytes]]] = {}

    def has(self, partition: int) -> bool:
        return partition in self._heaps

    def rebuild(self, partition: int, deadlines: Iterable[tuple[int, bytes]]) -> None:
        heap = list(deadlines)
        heapq.heapify(heap)
        self._heaps[partition] = heap

    def push(self, partition: int, deadline_ms: int, key: bytes) -> None:
        heap = self._heaps.get(partition)
        if heap is not None:  # not indexed yet: the rebuild will find it in the table
            heapq.heappush(heap, (deadline_ms, key))

    def due(self, partition: int, now_ms: int) -> Iterator[bytes]:
        """Keys whose indexed deadline has passed (each may be stale: check the table)."""
        heap = self._heaps.get(partition, [])
        while heap and heap[0][0] <= now_ms:
            yield heapq.heappop(heap)[1]

    def forget(self) -> None:
        """After a rebalance: every partition is rebuilt from its table on its next tick."""
        self._heaps.clear()
