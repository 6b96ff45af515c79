"""The local durable spool: requests Kafka did not acknowledge within the deadline.

A 202 is only answered after the request is here and fsynced, so a 2xx never loses data. The
spool is a folder of append-only segment files; entries are ``key_len, value_len, crc32`` then
the bytes. Appends from concurrent requests are written and fsynced together (group commit) in
a worker thread, so the event loop never blocks on the disk.

Delivery is recorded in a side file of acknowledged entry numbers per segment. That file is not
fsynced: losing it after a crash only means re-sending entries already in Kafka, and every
record carries an event id that the processors dedupe on. A segment whose entries are all
acknowledged is deleted. A torn entry at the end of a segment (a crash mid-write) was never
acknowledged to anyone and is cut off. An entry in the middle whose checksum fails (the disk
lost it) is counted in ``lost`` and logged, and reading goes on past it: its length says where
the next one starts, and it keeps its number, so the acknowledgements of the others still
name the right entries.

The disk may refuse a write (full, or gone): a group of appends then fails as a whole, the
segment is cut back to what it held, every one of them is answered 503 (``SpoolFull``), and
the spool goes on as it was; a new segment that cannot be opened leaves the current one in
use. An acknowledgement that cannot be written is logged and counted (``errors``): the entry
is delivered, and at worst it is sent again after a restart.

One process owns a spool folder at a time (``flock`` on ``lock``); with several gateway
processes each claims its own slot below the spool root, and a slot that no live process holds
but that still has entries (fewer processes than before) is adopted and drained by one.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import SpoolFull

log = logging.getLogger(__name__)

HEADER = struct.Struct(">III")
ACK = struct.Struct(">I")
MAX_SLOTS = 256


@dataclass(frozen=True, slots=True, order=True)
class EntryId:
    segment: int
    index: int


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size: int = 0
    offsets: list[int] = field(default_factory=list)  # file offset of each entry
    acked: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)  # first sends in flight: not for the drainer

    @property
    def ack_path(self) -> Path:
        return self.path.with_suffix(".acks")

    @property
    def done(self) -> bool:
        return len(self.acked) == len(self.offsets)


def _lock(folder: Path) -> int | None:
    """The fd of the slot's lock if no other live process holds it, else None."""
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim_slot(root: Path) -> tuple[Path, int]:
    """The first spool slot below ``root`` that no other live process holds, and its lock fd."""
    root.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SLOTS):
        folder = root / f"slot-{n}"
        folder.mkdir(exist_ok=True)
        fd = _lock(folder)
        if fd is not None:
            return folder, fd
    raise SpoolFull(f"all {MAX_SLOTS} spool slots under {root} are in use")


def claim_orphans(root: Path, own: Path) -> Iterator[tuple[Path, int]]:
    """Slots below ``root`` that hold spooled entries but no live process: left behind when
    fewer gateway processes run than before. Each comes with its lock fd; close it when done."""
    for folder in sorted(root.glob("slot-*")):
        if folder != own and any(folder.glob("*.seg")):
            fd = _lock(folder)
            if fd is not None:
                yield folder, fd


class Spool:
    def __init__(self, folder: Path, max_bytes: int, segment_bytes: int = 8 * 1024 * 1024):
        self.folder = folder
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._file = None
        self._pending: list[tuple[bytes, bool, asyncio.Future[EntryId]]] = []
        self._pending_bytes = 0  # kept, not summed: appends under load must stay O(1)
        self._flushing: asyncio.Task[None] | None = None
        self.lost = 0    # entries found corrupt on disk
        self.errors = 0  # writes of acknowledgements the disk refused

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.folder.glob("*.seg")):
            segment = _Segment(int(path.stem), path)
            self._load(segment)
            if segment.done:
                self._delete(segment)
            else:
                self._segments[segment.number] = segment
        last = max(self._segments, default=0)
        self._roll(last + 1)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._active is not None and self._active.done:
            self._delete(self._active)

    # -- writing ------------------------------------------------------------------------------

    async def append(self, key: bytes, value: bytes, held: bool = False) -> EntryId:
        """Store one entry durably; returns once it is fsynced. Raises SpoolFull. ``held``:
        its first send is still in flight, so ``unacked`` leaves it out until it is ``ack``ed
        or ``release``d; held from the moment it is written, before anything can read it."""
        entry = HEADER.pack(len(key), len(value), zlib.crc32(value, zlib.crc32(key))) + key + value
        if self.bytes + self._pending_bytes + len(entry) > self.max_bytes:
            raise SpoolFull()
        future: asyncio.Future[EntryId] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, held, future))
        self._pending_bytes += len(entry)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending, self._pending_bytes = self._pending, [], 0
                try:
                    ids = await asyncio.to_thread(self._write, [(e, h) for e, h, _ in batch])
                except OSError as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(SpoolFull(f"the spool cannot be written: {exc}"))
                    continue
                for (_, _, future), entry_id in zip(batch, ids, strict=True):
                    if not future.done():
                        future.set_result(entry_id)
        finally:
            self._flushing = None

    def _write(self, entries: list[tuple[bytes, bool]]) -> list[EntryId]:
        """Append and fsync a group of entries; on an OSError the segment is cut back to what
        it held and nothing of the group is recorded."""
        assert self._active is not None and self._file is not None
        if self._active.size >= self.segment_bytes:
            self._roll(self._active.number + 1)
        segment, f = self._active, self._file
        try:
            f.write(b"".join(entry for entry, _ in entries))
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            try:
                f.seek(segment.size)
                f.truncate(segment.size)
            except OSError:
                log.exception("spool %s: could not cut a failed write back", segment.path)
            raise
        ids = []
        for entry, held in entries:
            if held:  # before the offset makes it visible to ``unacked``
                segment.held.add(len(segment.offsets))
            ids.append(EntryId(segment.number, len(segment.offsets)))
            segment.offsets.append(segment.size)
            segment.size += len(entry)
        return ids

    def _roll(self, number: int) -> None:
        """Start a new segment; if it cannot be opened, the current one stays in use."""
        segment = _Segment(number, self.folder / f"{number:012d}.seg")
        f = open(segment.path, "ab")  # noqa: SIM115 - lives as long as the segment
        try:
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the new file's name must survive a crash too
            finally:
                os.close(dir_fd)
        except OSError:
            f.close()
            raise
        if self._file is not None:
            self._file.close()
        self._segments[number] = segment
        self._active, self._file = segment, f

    # -- delivery ------------------------------------------------------------------------------

    def release(self, entry_id: EntryId) -> None:
        """A held entry's first send failed: ``unacked`` gives it to the drainer."""
        segment = self._segments.get(entry_id.segment)
        if segment is not None:
            segment.held.discard(entry_id.index)

    def ack(self, entry_id: EntryId) -> None:
        """Record that an entry is in Kafka; drop its segment once all of it is."""
        segment = self._segments.get(entry_id.segment)
        if segment is None or entry_id.index in segment.acked:
            return
        segment.held.discard(entry_id.index)
        segment.acked.add(entry_id.index)
        try:
            if segment.done and segment is not self._active:
                self._delete(segment)
                return
            with open(segment.ack_path, "ab") as f:
                f.write(ACK.pack(entry_id.index))
        except OSError as exc:  # delivered all the same; a restart may send it once more
            self.errors += 1
            log.warning("spool %s: an acknowledgement could not be written: %s", self.folder,
                        exc)

    def unacked(self, limit: int) -> Iterator[tuple[EntryId, bytes, bytes]]:
        """Up to ``limit`` entries not yet in Kafka, oldest first (but the held ones)."""
        count = 0
        for number in sorted(list(self._segments)):  # a flush thread may add a segment
            segment = self._segments.get(number)
            if segment is None:
                continue
            missing = [i for i in range(len(segment.offsets))
                       if i not in segment.acked and i not in segment.held]
            if not missing:
                continue
            with open(segment.path, "rb") as f:
                for index in missing:
                    f.seek(segment.offsets[index])
                    key_len, value_len, _ = HEADER.unpack(f.read(HEADER.size))
                    key = f.read(key_len)
                    yield EntryId(number, index), key, f.read(value_len)
                    count += 1
                    if count >= limit:
                        return

    @property
    def depth(self) -> int:
        return sum(len(s.offsets) - len(s.acked) for s in list(self._segments.values()))

    @property
    def bytes(self) -> int:
        return sum(s.size for s in list(self._segments.values()))

    # -- recovery ------------------------------------------------------------------------------

    def _load(self, segment: _Segment) -> None:
        data = segment.path.read_bytes()
        offset = 0
        corrupt = set()
        while offset + HEADER.size <= len(data):
            key_len, value_len, crc = HEADER.unpack_from(data, offset)
            end = offset + HEADER.size + key_len + value_len
            if end > len(data):
                break  # torn tail: never acknowledged to a sender
            if zlib.crc32(data[offset + HEADER.size:end]) != crc:
                corrupt.add(len(segment.offsets))  # keeps its number; never sent
            segment.offsets.append(offset)
            offset = end
        segment.size = offset
        if segment.ack_path.exists():
            acks = segment.ack_path.read_bytes()
            usable = len(acks) - len(acks) % ACK.size
            segment.acked = {i for (i,) in ACK.iter_unpack(acks[:usable])
                             if i < len(segment.offsets)}
        lost = corrupt - segment.acked
        if lost:
            self.lost += len(lost)
            log.error("spool %s: %d entr%s failed their checksum and cannot be delivered "
                      "(numbers %s)", segment.path, len(lost), "y" if len(lost) == 1 else "ies",
                      sorted(lost)[:10])
        segment.acked |= corrupt
        if offset < len(data) and not corrupt:  # after a corrupt header, nothing is certain
            os.truncate(segment.path, offset)

    def _delete(self, segment: _Segment) -> None:
        self._segments.pop(segment.number, None)
        segment.path.unlink(missing_ok=True)
        segment.ack_path.unlink(missing_ok=True)
