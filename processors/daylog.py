"""Writing the day logs (``logstore`` has their layout, the line's shape and the readers).

Every processed record is appended to the log of its receipt day (UTC), one file per raw
partition so that workers never share a file. A partition's lines are written in ``_source``
order (envelope offset, index), so a file's last line says how far the file got, and a line a
file already holds is never written to it again. The lines of one envelope are written with
one ``write`` per file, after the journal (``processors.journal``) holds them: after a crash
the processor writes the journal's last entry again, which adds what a file lacks. A
``kill -9`` at any moment therefore leaves neither gaps nor duplicates. A write is whole or
not at all (``processors.appending``), a torn last line (a machine crash) is cut off, and
``sync`` fsyncs what was written, which the worker does before every offset commit.

A line whose event day differs from its receipt day is noted in the event-day index; the
lines' profiles and identifiers go to the timeline index (``processors.timeline``), committed
with the files; the merges the identities stage decides go beside the day logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from logstore.layout import INDEX, day_of, merges_name, part_name, project_dir
from logstore.lines import LogLine
from processors.appending import write_all
from processors.timeline import UNSHOWN, TimelineIndex
from schemas.identity import Merge

log = logging.getLogger(__name__)

MAX_OPEN_FILES = 128
TAIL_CHUNK = 65536
WHOLE = 1 << 62  # the index of a line written before envelopes: its whole record


class DayLogWriter:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: OrderedDict[Path, IO[bytes]] = OrderedDict()
        self._logs: dict[tuple[str, str, int], Path] = {}  # (project, day, partition) → file
        self._indexed: set[tuple[str, str, str]] = set()
        self._reached: dict[Path, tuple[int, int]] = {}  # file → its last (offset, index)
        self._unsynced: set[Path] = set()
        self._merges: dict[Path, list[bytes]] = {}  # merges to append at the next sync
        self.timeline = TimelineIndex(root)

    def project_dir(self, project: str) -> Path:
        return project_dir(self.root, project)

    def path(self, project: str, day: str, partition: int) -> Path:
        path = self._logs.get((project, day, partition))
        if path is None:
            path = self.project_dir(project) / day / part_name(partition)
            if len(self._logs) > 4 * MAX_OPEN_FILES:
                self._logs.clear()
            self._logs[project, day, partition] = path
        return path

    def write(self, partition: int, offset: int, lines: Iterable[LogLine]) -> int:
        """Append the lines of the envelope at ``offset`` that their files do not hold yet,
        one write per file, each whole or not at all; how many were written. A file holds
        every line up to its last line's (offset, index), so writing an envelope again (after
        a crash, from the journal) adds only what is missing, and never a line twice."""
        by_file: dict[Path, list[bytes]] = {}
        last: dict[Path, int] = {}
        events: dict[str, list[tuple[str, int, str, int, int]]] = {}
        identifiers: dict[str, list[tuple[str, str, str]]] = {}
        for project, day, index, data, event_day, indexed in lines:
            if indexed is not None:  # into the index even when the file holds the line
                profile, event_ms, kind, names = indexed
                if kind not in UNSHOWN:
                    events.setdefault(project, []).append(
                        (profile, event_ms, day, offset, index))
                identifiers.setdefault(project, []).extend((n, profile, day) for n in names)
            path = self.path(project, day, partition)
            if (offset, index) <= self._reached_in(path):
                continue
            by_file.setdefault(path, []).append(data)
            last[path] = index
            if event_day is not None and event_day != day:
                self._index(path.parent.parent, event_day, day)
        for path, chunks in by_file.items():
            f = self._file(path)
            write_all(f, b"".join(chunks), f.seek(0, os.SEEK_END))
            self._reached[path] = (offset, last[path])
            self._unsynced.add(path)
        for project in events.keys() | identifiers.keys():
            self.timeline.add(project, partition, events.get(project, []),
                              identifiers.get(project, ()))
        return sum(len(chunks) for chunks in by_file.values())

    def write_merge(self, merge: Merge, partition: int) -> None:
        """Log a merge decided in links ``partition`` today, at the next ``sync``: appended
        to the project's ``merges-NNN.jsonl`` (for ``trackpipe query``) and to the timeline
        index. Nothing here can fail, so the identities stage never half-applies a link."""
        day = day_of(int(time.time() * 1000))
        path = self.project_dir(merge.project) / day / merges_name(partition)
        self._merges.setdefault(path, []).append(merge.to_json() + b"\n")
        self.timeline.add_merge(merge.project, partition, merge.source, merge.into, day)

    def _reached_in(self, path: Path) -> tuple[int, int]:
        reached = self._reached.get(path)
        if reached is None:
            reached = self._reached[path] = last_source(path)
        return reached

    def recover_position(self, partition: int) -> int:
        """The last offset in ``partition``'s files (-1: none). Only for a partition the
        journal knows nothing of (logs written before it existed): it scans every file."""
        last = -1
        for path in self.root.glob(f"*/*/{part_name(partition)}"):
            last = max(last, last_source(path)[0])
        return last

    def days(self, project: str) -> list[str]:
        """The names in ``project``'s folder (its receipt days, and its indexes)."""
        folder = self.project_dir(project)
        return [entry.name for entry in folder.iterdir()] if folder.is_dir() else []

    def remove(self, project: str, partition: int, days: Iterable[str]) -> int:
        """Remove ``partition``'s files of the given receipt days of ``project`` (its merges
        and timeline index entries of those days, a day's folder too once no partition's file
        is left in it, and the event-day index of that day); how many day logs went. Only
        this project's folder is touched."""
        folder = self.project_dir(project)
        days = list(days)
        removed = 0
        self.timeline.remove_days(project, partition, days)
        for day in days:
            removed += self._unlink(folder / day / part_name(partition))
            self._unlink(folder / day / merges_name(partition))
            with contextlib.suppress(OSError):  # others' files may still be in it
                (folder / day).rmdir()
            with contextlib.suppress(FileNotFoundError):
                (folder / INDEX / day).unlink()
        return removed

    def _unlink(self, path: Path) -> bool:
        f = self._files.pop(path, None)
        if f is not None:
            f.close()
        self._reached.pop(path, None)
        self._unsynced.discard(path)
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False

    def sync(self) -> None:
        """Append the merges gathered, fsync every file written since the last call and
        commit the timeline index (before faust commits offsets). A merges file written before
        a failure can take its lines again at the retry: readers take merges as a set."""
        self._append_merges()
        for path in list(self._unsynced):
            f = self._files.get(path)
            if f is not None:
                os.fsync(f.fileno())
            self._unsynced.discard(path)
        self.timeline.commit()

    def forget(self) -> None:
        """Close every file and forget how far each got: after a rebalance another worker
        may have written them."""
        self.close()
        self._reached.clear()

    def _append_merges(self) -> None:
        for path, lines in list(self._merges.items()):
            f = self._file(path)
            write_all(f, b"".join(lines), f.seek(0, os.SEEK_END))
            self._unsynced.add(path)
            del self._merges[path]

    def close(self) -> None:
        self._append_merges()
        for f in self._files.values():
            f.close()
        self._files.clear()
        self.timeline.close()

    def _file(self, path: Path) -> IO[bytes]:
        f = self._files.get(path)
        if f is not None:
            self._files.move_to_end(path)
            return f
        path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_tail(path)
        f = open(path, "ab", buffering=0)  # noqa: SIM115 - cached; unbuffered: kill -9 safe
        self._files[path] = f
        if len(self._files) > MAX_OPEN_FILES:
            oldest_path, oldest = self._files.popitem(last=False)
            if oldest_path in self._unsynced:
                os.fsync(oldest.fileno())
                self._unsynced.discard(oldest_path)
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


def _last_line_start(f: IO[bytes], end: int) -> int:
    """Where the last line of the first ``end`` bytes begins (they end in a newline), however
    long it is: read backwards a chunk at a time."""
    pos = end - 1  # the newline that ends the last line
    while pos > 0:
        start = max(0, pos - TAIL_CHUNK)
        f.seek(start)
        cut = f.read(pos - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def cut_torn_tail(path: Path) -> None:
    """Cut a last line that has no newline (a write torn by a crash) off ``path``."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        start = _last_line_start(f, size + 1) if size > 1 else 0
        log.warning("day log %s: a torn last line (%d bytes) cut off", path, size - start)
        f.truncate(start)


def last_source(path: Path) -> tuple[int, int]:
    """(offset, index) of the last whole line of ``path``; (-1, -1) when it has none. A line
    from before envelopes has no index: its whole record was written."""
    if not path.exists():
        return -1, -1
    cut_torn_tail(path)
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = _last_line_start(f, end)
            f.seek(start)
            line = f.read(end - start)
            try:
                source = json.loads(line)["_source"]
                return int(source["offset"]), int(source.get("index", WHOLE))
            except (ValueError, KeyError, TypeError):
                end = start  # not one of ours: look at the line before
    return -1, -1
