"""Reading a project's day logs: lines in receipt order, by receipt day or by event day.

A day is every partition's file of it, merged by receipt time (each file is in receipt
order). Reading by event day also opens the receipt days the event-day index names for it,
instead of scanning every file. A line being written at that moment (no newline yet) is read
next time; a line that is not a day-log line is an ``UnreadableLine`` naming the file and the
byte it starts at.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from logstore.layout import DAY, INDEX, PARTS, day_of, project_dir


class UnreadableLine(ValueError):
    """A day-log line that is not one: not JSON, not an object, or no ``_source``."""


def _receipt_days(folder: Path, days: list[str], event_days: set[str] | None) -> list[str]:
    receipt_days = set(days)
    for event_day in event_days or ():
        index = folder / INDEX / event_day
        if index.exists():
            receipt_days |= {day for day in index.read_text().split() if DAY.fullmatch(day)}
    return sorted(receipt_days)


def _new_lines(path: Path, positions: dict[Path, int],
               event_days: set[str] | None) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        f.seek(positions.get(path, 0))
        for line in f:
            if not line.endswith(b"\n"):
                break  # being written right now: read it next time
            start, positions[path] = positions.get(path, 0), f.tell()
            try:
                record = json.loads(line.decode("utf-8", "replace"))
            except ValueError:
                record = None
            if not isinstance(record, dict):
                raise UnreadableLine(f"{path}: the line at byte {start} is not a day-log line "
                                     "(not a JSON object)")
            if event_days is None or _event_day(record) in event_days:
                yield record


def _event_day(record: dict[str, Any]) -> str | None:
    ms = record.get("event_ms", 0)
    if not isinstance(ms, int):
        return None
    try:
        return day_of(ms)
    except (OverflowError, ValueError, OSError):  # a time no calendar day holds
        return None


def read_lines(root: Path, project: str, days: list[str],
               event_days: set[str] | None = None,
               positions: dict[Path, int] | None = None) -> Iterator[dict[str, Any]]:
    """Lines of the given receipt days, in receipt order (a day's partition files merged);
    with ``event_days``, only lines of those event days, also from the receipt days the index
    names. ``positions`` remembers how far each file was read, so a second call yields only
    what was added since."""
    folder = project_dir(root, project)
    positions = {} if positions is None else positions
    for day in _receipt_days(folder, days, event_days):
        # each partition's file is in receipt order; the day is all of them, merged
        files = [_new_lines(path, positions, event_days)
                 for path in sorted((folder / day).glob(PARTS))]
        yield from heapq.merge(*files, key=_received)


def _received(record: dict[str, Any]) -> tuple[int | float, str]:
    """The merge order of a day's files: comparable whatever a line holds."""
    ms, key = record.get("received_ms", 0), record.get("id", "")
    return (ms if isinstance(ms, int | float) else 0, key if isinstance(key, str) else "")


def follow_lines(root: Path, project: str, days: list[str],
                 event_days: set[str] | None = None,
                 poll_s: float = 1.0) -> Iterator[dict[str, Any]]:
    """``read_lines``, then every line added later, until interrupted."""
    positions: dict[Path, int] = {}
    while True:
        yield from read_lines(root, project, days, event_days, positions)
        time.sleep(poll_s)
