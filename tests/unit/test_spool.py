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


def values(spool):
    return [v for _, _, v in spool.unacked(100)]


async def test_a_write_the_disk_refuses_is_503_and_leaves_the_spool_consistent(
        tmp_path, open_spool, monkeypatch):
    import gateway.spool as spool_module

    spool = open_spool(tmp_path)
    await spool.append(b"k", b"first")
    real_fsync, calls = os.fsync, []

    def full_disk_once(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(spool_module.os, "fsync", full_disk_once)
    with pytest.raises(SpoolFull, match="cannot be written"):
        await spool.append(b"k", b"refused")
    await spool.append(b"k", b"third")
    assert values(spool) == [b"first", b"third"] and spool.depth == 2
    spool.close()
    assert values(open_spool(tmp_path)) == [b"first", b"third"]


async def test_a_new_segment_that_cannot_be_opened_leaves_the_current_one_in_use(
        tmp_path, open_spool, monkeypatch):
    import gateway.spool as spool_module

    spool = open_spool(tmp_path, segment_bytes=16)
    await spool.append(b"k", b"x" * 20)  # the segment is full: the next append rolls
    calls = []

    def refuse_once(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(24, "Too many open files")
        return open(path, *args, **kwargs)

    monkeypatch.setattr(spool_module, "open", refuse_once, raising=False)
    async with asyncio.timeout(5):  # (it used to hang: its flush task had died)
        with pytest.raises(SpoolFull):
            await spool.append(b"k", b"refused")
        await spool.append(b"k", b"later")
    assert values(spool) == [b"x" * 20, b"later"]


async def test_an_acknowledgement_the_disk_refuses_is_counted_not_raised(tmp_path,
                                                                        open_spool):
    spool = open_spool(tmp_path)
    first = await spool.append(b"k", b"first")
    await spool.append(b"k", b"second")
    for ack_file in tmp_path.glob("*.acks"):
        ack_file.unlink()
    (next(tmp_path.glob("*.seg")).with_suffix(".acks")).mkdir()  # cannot be opened to append
    spool.ack(first)
    assert spool.errors == 1 and values(spool) == [b"second"]


async def test_a_corrupt_entry_is_skipped_and_counted_and_the_later_ones_still_go(
        tmp_path, open_spool):
    spool = open_spool(tmp_path)
    ids = [await spool.append(b"k", f"entry-{i}".encode()) for i in range(4)]
    spool.ack(ids[3])
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[data.index(b"entry-1")] ^= 0xFF  # the disk lost a byte of the second entry
    segment.write_bytes(bytes(data))
    again = open_spool(tmp_path)
    assert values(again) == [b"entry-0", b"entry-2"] and again.lost == 1


async def test_an_entry_whose_first_send_is_in_flight_is_never_given_to_the_drainer(
        tmp_path, open_spool):
    spool = open_spool(tmp_path)
    seen_while_written = []
    write = spool._write

    def write_then_look(entries):  # the drainer looking the moment the entries exist
        ids = write(entries)
        seen_while_written.extend(key for _, key, _ in spool.unacked(10))
        return ids

    spool._write = write_then_look
    held, failed, _ = [await spool.append(k, b"v", held=h)
                           for k, h in ((b"held", True), (b"failed", True), (b"plain", False))]
    assert seen_while_written == [b"plain"]
    assert [key for _, key, _ in spool.unacked(10)] == [b"plain"]
    spool.ack(held)            # its own send delivered it
    spool.release(failed)      # its own send failed: the drainer's now
    assert [key for _, key, _ in spool.unacked(10)] == [b"failed", b"plain"]
    assert spool.depth == 2
