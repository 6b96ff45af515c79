import asyncio
import os

import pytest

from gateway.errors import SpoolFull
from gateway.spool import Spool, claim_slot


@pytest.fixture
def open_spool():
    """Factory: an opened spool, closed at the end of the test."""
    opened = []

    def make(folder, **kwargs):
        spool = Spool(folder, kwargs.pop("max_bytes", 10**9), **kwargs)
        spool.open()
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        spool.close()


async def test_entries_survive_a_reopen_until_acknowledged(tmp_path, open_spool):
    spool = open_spool(tmp_path)
    ids = await asyncio.gather(*(spool.append(f"k{i}".encode(), f"v{i}".encode())
                                 for i in range(10)))
    assert len(set(ids)) == 10 and spool.depth == 10
    for entry in ids[:4]:
        spool.ack(entry)
    spool.close()

    again = open_spool(tmp_path)
    assert [(k, v) for _, k, v in again.unacked(100)] == [
        (f"k{i}".encode(), f"v{i}".encode()) for i in range(4, 10)]
    assert again.depth == 6


async def test_fully_acknowledged_segments_are_deleted(tmp_path, open_spool):
    spool = open_spool(tmp_path, segment_bytes=64)
    ids = [await spool.append(b"k", b"x" * 60) for _ in range(4)]
    assert len(list(tmp_path.glob("*.seg"))) >= 3
    for entry in ids:
        spool.ack(entry)
    spool.close()
    assert list(tmp_path.glob("*.seg")) == [] and spool.bytes == 0


async def test_a_torn_tail_is_ignored_and_truncated(tmp_path, open_spool):
    spool = open_spool(tmp_path)
    await spool.append(b"k1", b"v1")
    await spool.append(b"k2", b"v2")
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    with open(segment, "ab") as f:
        f.write(b"\x00\x00\x00\x02\x00\x00\x00\x09kk-partial")
    again = open_spool(tmp_path)
    assert [k for _, k, _ in again.unacked(10)] == [b"k1", b"k2"]
    await again.append(b"k3", b"v3")
    again.close()
    assert [k for _, k, _ in open_spool(tmp_path).unacked(10)] == [b"k1", b"k2", b"k3"]


async def test_a_corrupt_entry_ends_the_readable_part(tmp_path, open_spool):
    spool = open_spool(tmp_path)
    await spool.append(b"k1", b"v1")
    await spool.append(b"k2", b"v2")
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert [k for _, k, _ in open_spool(tmp_path).unacked(10)] == [b"k1"]


async def test_full_spool_refuses_and_keeps_what_it_has(tmp_path, open_spool):
    spool = open_spool(tmp_path, max_bytes=100)
    await spool.append(b"k", b"x" * 50)
    with pytest.raises(SpoolFull):
        await spool.append(b"k", b"x" * 50)
    assert spool.depth == 1


async def test_unwritable_spool_reports_spool_full(tmp_path, open_spool):
    spool = open_spool(tmp_path)
    spool._file.close()  # the disk went away under us
    spool._file = open(os.devnull, "rb")  # noqa: SIM115 - writes now fail with an OSError
    with pytest.raises(SpoolFull, match="cannot be written"):
        await spool.append(b"k", b"v")


def test_each_process_claims_its_own_slot(tmp_path):
    first, fd1 = claim_slot(tmp_path)
    second, fd2 = claim_slot(tmp_path)
    assert first != second
    os.close(fd1)
    third, fd3 = claim_slot(tmp_path)
    assert third == first  # a released slot (and what it holds) is taken again
    os.close(fd2)
    os.close(fd3)
