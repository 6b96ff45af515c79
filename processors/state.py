"""A table as the stages use it: values decoded on read, changes written back once a commit.

The stages keep their state in faust tables (faust recovers them from their changelogs after
a restart or a rebalance, and routes lookups to the worker that owns a key). They do not write
through faust's ``table[key] = value``, which sends a changelog message for every write (about
0.2 ms each here): a write goes to this object's dirty map, and ``changes`` hands out one
changelog message per dirty key, encoded once, when the worker commits
(``processors.checkpoint``: outputs, then changelogs, then the store). The message goes to
the partition of the record that made the write, as faust's own write would, and its value
is what faust reads back when it recovers the table.

The store holds encoded values (bytes): a million visitors cost what their bytes cost, not
what a million nested dicts would, and recovery from the changelog decodes nothing. A store is
anything with the small ``Store`` interface: a dict (tests, benchmarks), or faust's RocksDB
store behind the adapter in ``processors.worker``, whose values live on local disk and whose
recovery after a restart reads only the changelog written since (the partition of each write
is given, because faust's own RocksDB writes take it from the event being handled).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Protocol

_DELETED = object()
CACHE_SIZE = 20_000  # decoded values a table keeps in front of its store

# changelog topic, key, value (None: a deletion), partition
Change = tuple[str, bytes, bytes | None, int]


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, partition: int) -> None: ...

    def delete(self, key: bytes, partition: int) -> None: ...

    def items(self, partition: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value; with ``partition``, at least that partition's (a store that
        does not keep partitions apart gives every one)."""


class MappingStore:
    """A store in a mapping (a dict, faust's memory store): partitions do not matter."""

    def __init__(self, data: MutableMapping[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self.data[key] = value

    def delete(self, key: bytes, partition: int) -> None:
        self.data.pop(key, None)

    def items(self, partition: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self.data.items()))

    def __len__(self) -> int:
        return len(self.data)


class TableState:
    """A table's values in three layers, read newest first: ``_dirty`` (written since the
    last commit began), ``_committing`` (handed out by ``changes`` and on their way to the
    changelog) and the store (what a restarted worker finds). A value reaches the store only
    with ``persist``, once its changelog message is delivered (``processors.checkpoint``).

    In front of the store, the ``cache_size`` values last read or persisted, decoded: a
    visitor's requests come in bursts, and reading RocksDB and decoding its bytes again was
    a fifth of deciding a request. ``forget`` empties it when partitions move, because their
    next owner may write the store meanwhile."""

    def __init__(self, changelog: str, store: Store | MutableMapping[bytes, Any],
                 encode: Callable[[Any], bytes], decode: Callable[[bytes], Any],
                 cache_size: int = CACHE_SIZE) -> None:
        self.changelog = changelog
        self.store: Store = store if hasattr(store, "put") else MappingStore(store)
        self._encode = encode
        self._decode = decode
        # key → (value or _DELETED, partition, its encoding if known)
        self._dirty: dict[bytes, tuple[Any, int, bytes | None]] = {}
        # key → (value or _DELETED, partition, its encoding or None for a deletion)
        self._committing: dict[bytes, tuple[Any, int, bytes | None]] = {}
        self._cache: OrderedDict[bytes, Any] = OrderedDict()  # key → value (None: absent)
        self._cache_size = cache_size

    def get(self, key: bytes) -> Any | None:
        found = self._dirty.get(key) or self._committing.get(key)
        if found is not None:
            return None if found[0] is _DELETED else found[0]
        cache = self._cache
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        data = self.store.get(key)
        value = None if data is None else self._decode(data)
        self._remember(key, value)
        return value

    def _remember(self, key: bytes, value: Any) -> None:
        cache = self._cache
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def forget(self) -> None:
        """Drop the cached values (after a rebalance: the store may have changed beneath)."""
        self._cache.clear()

    def put(self, key: bytes, value: Any, partition: int, encoded: bytes | None = None
            ) -> None:
        """Set ``key``; the value must not be changed in place afterwards (it is encoded at
        the next commit, unless ``encoded`` already holds its encoding)."""
        self._dirty[key] = (value, partition, encoded)

    def delete(self, key: bytes, partition: int) -> None:
        self._dirty[key] = (_DELETED, partition, None)

    def items(self, partition: int | None = None) -> Iterator[tuple[bytes, Any]]:
        """Every key and its value, the newest layer's (for rebuilding indexes); with
        ``partition``, at least that partition's: a store that keeps partitions apart reads
        only its database, so a worker's first tick of each of its partitions does not decode
        every partition's values each time."""
        for key, data in self.store.items(partition):
            if key not in self._dirty and key not in self._committing:
                yield key, self._decode(data)
        for layer, newer in ((self._committing, self._dirty), (self._dirty, {})):
            for key, (value, written_in, _) in list(layer.items()):
                if value is _DELETED or key in newer:
                    continue
                if partition is None or written_in == partition:
                    yield key, value

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def changes(self) -> list[Change]:
        """Begin a commit: the changelog message of every key written since the last one,
        each encoded once. The values stay readable, and reach the store with ``persist``."""
        out: list[Change] = []
        for key, (value, partition, encoded) in self._dirty.items():
            data = None if value is _DELETED else (
                encoded if encoded is not None else self._encode(value))
            self._committing[key] = (value, partition, data)
            out.append((self.changelog, key, data, partition))
        self._dirty.clear()
        return out

    def persist(self) -> None:
        """Write what ``changes`` handed out to the store: only once the changelog holds it,
        so that the store is never ahead of what a rebuild elsewhere would find."""
        for key, (value, partition, data) in self._committing.items():
            if data is None:
                self.store.delete(key, partition)
                self._remember(key, None)
            else:
                self.store.put(key, data, partition)
                self._remember(key, value)
        self._committing.clear()
