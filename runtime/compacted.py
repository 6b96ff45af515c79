"""What a record of a compacted topic does to a view of that topic: a tombstone (a record
without a value, here None) pops its key, anything else sets it.

Every view a process keeps of a compacted topic (the registry, the quota states, the trigger
rules, a partition of pending firings) applies its records through ``apply``, so they all
agree with what Kafka's compaction keeps. Pure: no I/O, the caller brings the records.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def apply(view: MutableMapping[K, V], key: K, value: V | None) -> None:
    """Apply one record of a compacted topic to ``view``: None (a tombstone) pops ``key``,
    any other value sets it."""
    if value is None:
        view.pop(key, None)
    else:
        view[key] = value
