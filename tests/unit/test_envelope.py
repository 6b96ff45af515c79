"""Envelopes (schemas.envelope): what they hold reads back in order, and one limit,
``envelope.MAX_BYTES``, closes an envelope wherever one is packed."""

import msgpack
import pytest

from processors.outbound import Outbound
from schemas import envelope


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536], ids=lambda n: f"{n} items")
def test_an_envelope_reads_back_as_its_items_in_order(count):
    items = [msgpack.packb(i) for i in range(count)]
    packed = envelope.pack(items)
    assert envelope.unpack(packed) == list(range(count))
    assert len(packed) - sum(map(len, items)) <= envelope.HEADER_BYTES


async def test_the_processors_close_an_envelope_at_the_limit():
    sent = []

    class Transport:
        async def send(self, topic, partition, messages):
            sent.extend(value for _, value in messages)

    item = msgpack.packb(b"x" * (100 * 1024))
    outbound = Outbound(Transport(), {"links": 1, "dl": 1}, "dl")
    for _ in range(12):
        outbound.record("links", b"k", item)
    await outbound.flush()
    per_envelope = (envelope.MAX_BYTES - envelope.HEADER_BYTES) // len(item)
    assert per_envelope == 5  # 100 KiB items in 512 KiB envelopes
    assert [len(envelope.unpack(value)) for value in sent] == [5, 5, 2]
    assert all(len(value) <= envelope.MAX_BYTES for value in sent)
