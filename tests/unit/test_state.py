"""A table as the stages use it (``processors.state``): its layers and the cache in front of
its store."""

from processors.state import TableState


class Counting(dict):
    """A store that counts its reads."""

    reads = 0

    def get(self, key, default=None):
        self.reads += 1
        return super().get(key, default)

    def put(self, key, value, partition):
        self[key] = value

    def delete(self, key, partition):
        self.pop(key, None)


def table(store, cache_size=2):
    return TableState("t-changelog", store, lambda v: v.encode(), lambda b: b.decode(),
                      cache_size=cache_size)


def test_a_value_is_read_from_its_store_once_while_it_stays_cached():
    store = Counting({b"a": b"1", b"b": b"2", b"c": b"3"})
    t = table(store)
    assert [t.get(b"a"), t.get(b"a"), t.get(b"missing"), t.get(b"missing")] == [
        "1", "1", None, None]
    assert store.reads == 2
    t.get(b"b")
    t.get(b"c")  # beyond the cache's size: the least recently read goes
    t.get(b"a")
    assert store.reads == 5


def test_what_is_persisted_is_read_back_without_the_store_and_forget_reads_it_again():
    store = Counting()
    t = table(store)
    t.put(b"k", "v1", 0)
    t.changes()
    t.persist()
    assert t.get(b"k") == "v1" and store.reads == 0
    store[b"k"] = b"v2"  # the partition's next owner wrote it meanwhile
    assert t.get(b"k") == "v1"
    t.forget()  # a rebalance
    assert t.get(b"k") == "v2" and store.reads == 1
    t.delete(b"k", 0)
    t.changes()
    t.persist()
    assert t.get(b"k") is None and store.reads == 1


class Partitioned:
    """A store that keeps partitions apart, as faust's RocksDB store keeps a database each."""

    def __init__(self, by_partition):
        self.by_partition = by_partition

    def get(self, key):
        return next((p[key] for p in self.by_partition.values() if key in p), None)

    def put(self, key, value, partition):
        self.by_partition.setdefault(partition, {})[key] = value

    def delete(self, key, partition):
        self.by_partition.get(partition, {}).pop(key, None)

    def items(self, partition=None):
        chosen = self.by_partition.values() if partition is None else [
            self.by_partition.get(partition, {})]
        return iter([item for found in chosen for item in found.items()])


def test_items_of_a_partition_read_only_its_store_and_its_writes():
    t = table(Partitioned({1: {b"a": b"1", b"b": b"2"}, 2: {b"c": b"3"}}))
    t.put(b"b", "2'", 1)   # newer than the store's, same partition
    t.put(b"d", "4", 2)
    t.changes()            # committing
    t.put(b"e", "5", 1)    # written since
    t.delete(b"c", 2)
    assert sorted(t.items(1)) == [(b"a", "1"), (b"b", "2'"), (b"e", "5")]
    assert sorted(t.items(2)) == [(b"d", "4")]
    assert sorted(t.items()) == [(b"a", "1"), (b"b", "2'"), (b"d", "4"), (b"e", "5")]
