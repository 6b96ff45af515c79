"""Which partition a key belongs to: Kafka's default partitioner, computed by us.

Between our own processes records travel in envelopes, one Kafka message per destination
partition, so the sender picks each record's partition itself instead of letting the client
hash the message key. It must pick exactly what the Kafka client would have picked for that
key (murmur2 of the key bytes, positive, modulo the partition count, as in the Java client and
aiokafka's ``DefaultPartitioner``): a visitor's records then stay on one partition whichever
process sent them, and faust's routing of a table lookup, which hashes the key with the
client's partitioner, finds the worker that owns it. Pure.
"""

from __future__ import annotations

import functools
import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The Java client's ``Utils.murmur2`` (unsigned 32-bit)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & ~3
    extra = length & 3
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@functools.lru_cache(maxsize=1 << 16)  # visitor keys repeat: a hit costs a dict lookup
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
