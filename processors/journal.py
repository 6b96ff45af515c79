"""The write-ahead journal of each raw partition: the processors' commit point.

Handling a raw envelope decides everything first, in memory: its day-log lines, the messages
and internal records it sends, and the final value of every table key it changed. That
decision is appended here as one entry, and only then applied: lines written, tables changed,
messages queued. So:

- an envelope whose entry is here is never decided again. Its offset is the partition's
  *position*: if its offset comes back (a crash or a rebalance before faust committed it),
  the entry is applied again instead: lines that are missing are written (a crash can stop
  between two files), the messages are sent again (consumers are idempotent, see
  ``docs/architecture.md``), and table writes newer than what the recovered table holds are
  applied again (its changelog may not have left before the crash);
- a crash before the entry is complete leaves a torn frame, which is cut off: nothing of that
  envelope was applied, and it is decided again.

Entries are framed ``length, crc32, msgpack``. A frame whose checksum fails but whose length
fits is skipped (counted in ``corrupt``) and reading goes on. Only the last moments matter
(what faust had not committed), so a file is rotated once it passes ``max_bytes`` and one
previous file is kept: history is at least ``max_bytes`` per partition.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgpack

from logstore.layout import part_stem
from logstore.lines import LogLine
from processors.appending import write_all

log = logging.getLogger(__name__)

FRAME = struct.Struct(">II")  # payload length, crc32 of the payload


@dataclass(slots=True)
class Entry:
    """What handling one raw envelope decided."""
    offset: int
    lines: list[LogLine] = field(default_factory=list)
    messages: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # internal items
    writes: list[tuple[str, bytes, Any]] = field(default_factory=list)  # table, key, value

    def to_bytes(self) -> bytes:
        return msgpack.packb([self.offset, self.lines, self.messages, self.records,
                              self.writes], use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        offset, lines, messages, records, writes = msgpack.unpackb(data, use_list=True)
        return cls(offset, [LogLine.from_obj(x) for x in lines], [tuple(x) for x in messages],
                   [tuple(x) for x in records], [tuple(x) for x in writes])


class Journal:
    def __init__(self, root: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.corrupt = 0
        self._files: dict[int, IO[bytes]] = {}
        self._ends: dict[int, int] = {}  # partition → its current file's size
        self._last: dict[int, Entry | None] = {}
        # partition → [its current file's index, its previous file's]: offset → (start, size)
        self._index: dict[int, tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]]] = {}
        self._paths: dict[int, tuple[Path, Path]] = {}  # partition → (current, previous)
        self._unsynced: set[int] = set()

    def _path(self, partition: int, previous: bool = False) -> Path:
        paths = self._paths.get(partition)
        if paths is None:
            stem = self.root / f"{part_stem(partition)}.journal"
            paths = self._paths[partition] = (stem, stem.with_name(stem.name + ".1"))
        return paths[previous]

    def position(self, partition: int) -> int:
        """The offset of the last envelope decided (-1: the journal knows none)."""
        last = self.last(partition)
        return -1 if last is None else last.offset

    def last(self, partition: int) -> Entry | None:
        if partition not in self._last:
            self._load(partition)
        return self._last[partition]

    def find(self, partition: int, offset: int) -> Entry | None:
        """The entry of ``offset``; None when it is older than the journal keeps."""
        if partition not in self._index:
            self._load(partition)
        for previous, index in enumerate(self._index[partition]):
            where = index.get(offset)
            if where is not None:
                start, size = where
                with open(self._path(partition, bool(previous)), "rb") as f:
                    f.seek(start)
                    return Entry.from_bytes(f.read(size))
        return None

    def append(self, partition: int, entry: Entry) -> None:
        """Add ``entry`` (one write); an OSError leaves at most a torn frame, cut off later."""
        if partition not in self._last:
            self._load(partition)
        payload = entry.to_bytes()
        f = self._file(partition)
        start = self._ends[partition]
        write_all(f, FRAME.pack(len(payload), zlib.crc32(payload)) + payload, start)
        end = self._ends[partition] = start + FRAME.size + len(payload)
        self._index[partition][0][entry.offset] = (start + FRAME.size, len(payload))
        self._last[partition] = entry
        self._unsynced.add(partition)
        if end > self.max_bytes:
            os.fsync(f.fileno())  # the rotation closes it
            self._rotate(partition)

    def sync(self) -> None:
        """fsync every journal file written to since the last call."""
        for partition in list(self._unsynced):
            f = self._files.get(partition)
            if f is not None:
                os.fsync(f.fileno())
            self._unsynced.discard(partition)

    def forget(self, partitions: Any) -> None:
        """After a rebalance another worker may have written these partitions' files."""
        for partition in partitions:
            self._last.pop(partition, None)
            self._index.pop(partition, None)
            self._ends.pop(partition, None)
            f = self._files.pop(partition, None)
            if f is not None:
                f.close()

    def close(self) -> None:
        self.forget(list(self._files))

    def _file(self, partition: int) -> IO[bytes]:
        f = self._files.get(partition)
        if f is None:
            self.root.mkdir(parents=True, exist_ok=True)
            f = self._files[partition] = open(  # noqa: SIM115 - kept open, like the day logs
                self._path(partition), "ab", buffering=0)
            self._ends[partition] = f.seek(0, os.SEEK_END)
        return f

    def _rotate(self, partition: int) -> None:
        self._files.pop(partition).close()
        os.replace(self._path(partition), self._path(partition, previous=True))
        self._index[partition] = ({}, self._index[partition][0])  # the older previous goes

    def _load(self, partition: int) -> None:
        indexes: tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]] = ({}, {})
        last: tuple[Path, int, int] | None = None
        for previous in (True, False):
            path = self._path(partition, previous)
            for offset, start, size in self._frames(path):
                indexes[previous][offset] = (start, size)
                last = (path, start, size)
        self._index[partition] = indexes
        self._last[partition] = None
        if last is not None:
            path, start, size = last
            with open(path, "rb") as f:
                f.seek(start)
                self._last[partition] = Entry.from_bytes(f.read(size))

    def _frames(self, path: Path) -> list[tuple[int, int, int]]:
        """(offset, payload start, payload size) of every whole frame; cuts a torn tail."""
        if not path.exists():
            return []
        data = path.read_bytes()
        found, pos = [], 0
        while pos + FRAME.size <= len(data):
            size, crc = FRAME.unpack_from(data, pos)
            start, end = pos + FRAME.size, pos + FRAME.size + size
            if end > len(data):
                break  # torn: its envelope was never applied
            payload = data[start:end]
            if zlib.crc32(payload) != crc:
                self.corrupt += 1
                log.error("journal %s: a corrupt entry at byte %d skipped", path, pos)
            else:
                try:
                    found.append((msgpack.unpackb(payload, use_list=True)[0], start, size))
                except Exception:  # a checksum collision on garbage: as corrupt
                    self.corrupt += 1
            pos = end
        if pos < len(data):
            log.warning("journal %s: a torn last entry (%d bytes) cut off", path, len(data) - pos)
            os.truncate(path, pos)
        return found
