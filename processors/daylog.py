"""Per-day logs: every processed record, appended to the log of its receipt day (UTC).

Layout: ``<root>/<project>/<YYYY-MM-DD>/part-<NN>.jsonl``, one file per raw partition so that
workers never share a file. Each line carries the raw record's Kafka partition and offset
(``_source``). Offsets of one partition are written in order, so the last line of each of its
files says how far that partition got; after a crash the writer finds that position and skips
what it already wrote. A ``kill -9`` at any moment therefore leaves neither gaps (every line is
written to the OS before its offset can be committed) nor duplicates (what is re-read is
skipped). A torn last line is cut off and written again.

Positions are the authority for completeness: a record that needs no line (a duplicate, a dead
letter) is recorded in ``<root>/_positions/part-<NN>``, so every offset of a partition up to
its position has been handled, and the processor can tell when its stream skipped some.

Event-day index: an action whose event day differs from its receipt day is noted in
``<root>/<project>/_index/<event-day>`` (one receipt day per line), so a read by event day
opens only the receipt days that hold such events instead of scanning every file.

Project names are checked again here (``schemas.project.check_name``): a name that could leave
the folder is refused with ``ValueError`` and the record goes to the dead-letter topic.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from processors.jsonline import to_json
from schemas.project import check_name

log = logging.getLogger(__name__)

MAX_OPEN_FILES = 128
INDEX = "_index"
POSITIONS = "_positions"
DAY_MS = 86_400_000


def day_of(ms: int) -> str:
    return _day_name(ms // DAY_MS)


@functools.lru_cache(maxsize=1024)
def _day_name(day: int) -> str:  # formatted once per day, not once per record
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


class DayLogWriter:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._positions: dict[int, int] = {}  # partition → last offset written
        self._files: OrderedDict[Path, IO[bytes]] = OrderedDict()
        self._logs: dict[tuple[str, str, int], Path] = {}  # (project, day, partition) → file
        self._indexed: set[tuple[str, str, str]] = set()

    def project_dir(self, project: str) -> Path:
        return self.root / check_name(project)

    def position(self, partition: int) -> int:
        """The last offset of ``partition`` already in the logs (-1 for none)."""
        if partition not in self._positions:
            self._positions[partition] = self._recover(partition)
        return self._positions[partition]

    def forget(self, partitions: Any) -> None:
        """Drop cached positions: recompute them from the files on next use."""
        for partition in partitions:
            self._positions.pop(partition, None)

    def write(self, partition: int, offset: int, project: str, received_ms: int,
              record: dict[str, Any]) -> bool:
        """Append one line unless this offset is already written; True if written.
        A record's ``event_ms`` (when it has one) feeds the event-day index."""
        if offset <= self.position(partition):
            log.info("day log: offset %s of partition %s is already written (at %s); skipped",
                     offset, partition, self._positions[partition])
            return False
        day = day_of(received_ms)
        path = self._logs.get((project, day, partition))
        if path is None:
            path = self.project_dir(project) / day / f"part-{partition:03d}.jsonl"
            if len(self._logs) > 4 * MAX_OPEN_FILES:
                self._logs.clear()
            self._logs[project, day, partition] = path
        line = dict(record, _source={"partition": partition, "offset": offset})
        self._file(path).write(to_json(line) + b"\n")
        self._positions[partition] = offset
        event_ms = record.get("event_ms")
        if event_ms is not None:
            event_day = day_of(event_ms)
            if event_day != day:
                self._index(path.parent.parent, event_day, day)
        return True

    def skip(self, partition: int, offset: int) -> None:
        """Record that ``offset`` needs no line (a duplicate or a dead letter), so that the
        position moves past it and a gap check does not fetch it again."""
        if offset <= self.position(partition):
            return
        self._positions[partition] = offset
        marker = self.root / POSITIONS / f"part-{partition:03d}"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(offset))

    def sync(self) -> None:
        """fsync every open file (the machine-crash durability point)."""
        for f in self._files.values():
            os.fsync(f.fileno())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def _file(self, path: Path) -> IO[bytes]:
        f = self._files.get(path)
        if f is not None:
            self._files.move_to_end(path)
            return f
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "ab", buffering=0)  # noqa: SIM115 - cached; unbuffered: kill -9 safe
        self._files[path] = f
        if len(self._files) > MAX_OPEN_FILES:
            _, oldest = self._files.popitem(last=False)
            oldest.close()
        return f

    def _index(self, folder: Path, event_day: str, receipt_day: str) -> None:
        key = (str(folder), event_day, receipt_day)
        if key in self._indexed:
            return
        index = folder / INDEX / event_day
        index.parent.mkdir(parents=True, exist_ok=True)
        known = set(index.read_text().split()) if index.exists() else set()
        if receipt_day not in known:
            with open(index, "a") as f:
                f.write(receipt_day + "\n")
        self._indexed.add(key)

    def _recover(self, partition: int) -> int:
        last = -1
        name = f"part-{partition:03d}.jsonl"
        for path in self.root.glob(f"*/*/{name}"):
            last = max(last, _last_offset(path))
        marker = self.root / POSITIONS / f"part-{partition:03d}"
        if marker.exists():
            try:
                last = max(last, int(marker.read_text()))
            except ValueError:
                pass  # a torn marker: the files still say how far we got
        return last


def _last_offset(path: Path) -> int:
    """The offset on the last whole line of ``path``; cuts a torn last line off."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return -1
        tail_start = max(0, size - 65536)
        f.seek(tail_start)
        tail = f.read()
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            f.truncate(tail_start + cut + 1 if cut >= 0 else tail_start)
            tail = tail[: cut + 1] if cut >= 0 else b""
        lines = tail.splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["_source"]["offset"])
        except (ValueError, KeyError, TypeError):
            continue
    return -1


def _receipt_days(folder: Path, days: list[str], event_days: set[str] | None) -> list[str]:
    receipt_days = set(days)
    for event_day in event_days or ():
        index = folder / INDEX / event_day
        if index.exists():
            receipt_days |= set(index.read_text().split())
    return sorted(receipt_days)


def _new_lines(path: Path, positions: dict[Path, int],
               event_days: set[str] | None) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        f.seek(positions.get(path, 0))
        for line in f:
            if not line.endswith(b"\n"):
                break  # being written right now: read it next time
            positions[path] = f.tell()
            record = json.loads(line.decode("utf-8", "replace"))
            if event_days is None or day_of(record.get("event_ms", 0)) in event_days:
                yield record


def read_lines(root: Path, project: str, days: list[str],
               event_days: set[str] | None = None,
               positions: dict[Path, int] | None = None) -> Iterator[dict[str, Any]]:
    """Lines of the given receipt days; with ``event_days``, only lines of those event days,
    also from the receipt days the index names. ``positions`` remembers how far each file was
    read, so a second call yields only what was added since."""
    folder = root / check_name(project)
    positions = {} if positions is None else positions
    for day in _receipt_days(folder, days, event_days):
        for path in sorted((folder / day).glob("part-*.jsonl")):
            yield from _new_lines(path, positions, event_days)


def follow_lines(root: Path, project: str, days: list[str],
                 event_days: set[str] | None = None,
                 poll_s: float = 1.0) -> Iterator[dict[str, Any]]:
    """``read_lines``, then every line added later, until interrupted."""
    positions: dict[Path, int] = {}
    while True:
        yield from read_lines(root, project, days, event_days, positions)
        time.sleep(poll_s)
