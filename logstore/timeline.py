"""The timeline index: which day-log lines are a person's, without scanning the day logs.

Each raw partition of a project has one SQLite database,
``<logs>/<project>/_timeline/part-NNN.sqlite``, written only by the worker that holds the
partition (like its day-log files, ``processors.timeline``), and each links partition one,
``merges-NNN.sqlite``, written by the identities stage that decides its merges; ``trackpipe
timeline`` reads them here:

- ``events(profile, event_ms, day, offset, idx)``: every logged line but pings, keyed by the
  profile it was logged under and its event time; ``day``, ``offset`` and ``idx`` say where
  the line is (its receipt day's file of this partition, and its ``_source``);
- ``identifiers(identifier, profile, day)``: every identifier a line carried (``cookie:…``,
  ``id:…``, ``email:…`` and its visitor key), with the profile it was logged under and the
  receipt day (so that retention removes identifiers with the days that held them);
- ``merges(source, survivor, day)``: which profile was folded into which (the merges are also
  appended to ``<day>/merges-NNN.jsonl``, for ``trackpipe query``).

A lookup (``Timeline``) is: the identifier's profiles (one B-tree probe per partition), the
profiles merged with them (two probes per partition for each round of merges followed), one
range read of ``events`` per partition, and for each event a binary search of its day file by
``(offset, idx)`` (a partition's file is in that order): O(P·(1 + 2M)·log R + E·log L) for P
partitions, M rounds of merges, R index rows, E events shown and L lines in a file.
``family`` and ``persons`` are the one rule of who a person is, for ``timeline`` and ``query``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from logstore.layout import MERGE_DBS, PART_DBS, TIMELINE, part_name
from logstore.reading import UnreadableLine
from logstore.retention import cutoff_day
from runtime.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    profile TEXT NOT NULL, event_ms INTEGER NOT NULL, day TEXT NOT NULL,
    offset INTEGER NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (profile, event_ms, offset, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS identifiers (
    identifier TEXT NOT NULL, profile TEXT NOT NULL, day TEXT NOT NULL,
    PRIMARY KEY (identifier, profile, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS merges (
    source TEXT NOT NULL, survivor TEXT NOT NULL, day TEXT NOT NULL,
    PRIMARY KEY (source, survivor, day)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS merges_by_survivor ON merges (survivor, source);
"""
SQLITE_INTEGER = 2**63 - 1  # the largest

@dataclass(frozen=True, slots=True)
class Family:
    """A person's profiles: those joined by merges, and whether more were left out."""

    profiles: frozenset[str]
    cut: bool  # the merges joined more than the bound allows; the nearest are kept


def family(start: Iterable[str], merged_with: Callable[[set[str]], set[str]],
           max_profiles: int) -> Family:
    """Every profile joined to ``start`` by merges, in either direction (a person's profiles
    before and after each merge), however long the chain (a cycle ends: a profile is visited
    once), up to ``max_profiles``: beyond, the family is cut to the profiles nearest ``start``
    (fewest merges away, then by name). ``merged_with`` answers the profiles one merge away
    from a set of them. The one rule of ``trackpipe timeline`` and ``trackpipe query``. Pure."""
    found: set[str] = set()
    frontier = set(start)
    while frontier:
        room = max_profiles - len(found)
        if len(frontier) > room:
            found.update(sorted(frontier)[:room])
            return Family(frozenset(found), cut=True)
        found |= frontier
        frontier = merged_with(frontier) - found
    return Family(frozenset(found), cut=False)


def persons(merges: Iterable[tuple[str, str]], max_profiles: int) -> tuple[dict[str, str], int]:
    """Each profile of ``merges`` (source, into) → the person it is counted as: the profile
    that names its family (``family``, from the first profile by name not yet counted), and
    how many families were cut. A family is named by the profile that was merged into nothing
    (the survivor); if several were (two devices' races) or none (a cycle, which the
    identities stage never makes), by the first of them by name. Pure."""
    neighbours: dict[str, set[str]] = defaultdict(set)
    merged: set[str] = set()
    for source, into in merges:
        if source != into:
            neighbours[source].add(into)
            neighbours[into].add(source)
            merged.add(source)
    person: dict[str, str] = {}

    def merged_with(profiles: set[str]) -> set[str]:
        return {other for profile in profiles for other in neighbours[profile]
                if other not in person}

    cuts = 0
    for profile in sorted(neighbours):
        if profile in person:
            continue
        found = family((profile,), merged_with, max_profiles)
        survivors = sorted(p for p in found.profiles if p not in merged)
        name = survivors[0] if survivors else min(found.profiles)
        person.update(dict.fromkeys(found.profiles, name))
        cuts += found.cut
    return person, cuts


def shown_range(now_ms: int, retention_days: int | None, from_ms: int | None = None,
                to_ms: int | None = None) -> tuple[int, int]:
    """The event times a timeline shows, [first, last]: nothing that has not happened yet
    (SPEC §4), nothing before the project's retention (accepted and logged, never shown), and
    within the range asked for. Pure."""
    first = from_ms if from_ms is not None else 0
    if retention_days is not None:
        kept = datetime.fromisoformat(cutoff_day(now_ms, retention_days)).replace(tzinfo=UTC)
        first = max(first, int(kept.timestamp() * 1000))
    last = now_ms if to_ms is None else min(to_ms, now_ms)
    return first, last


@dataclass(frozen=True, slots=True)
class Located:
    event_ms: int
    day: str
    partition: int
    offset: int
    idx: int


class Timeline:
    """Lookups over one project's logs (``root / project``, its name checked by the caller)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open: list[sqlite3.Connection] = []
        self._dbs = [(int(path.stem.split("-")[1]), db)
                     for path, db in self._databases(PART_DBS, "events")]
        self._merges = [db for _, db in self._databases(MERGE_DBS, "merges")]

    def _databases(self, pattern: str, table: str) -> list[tuple[Path, sqlite3.Connection]]:
        """The databases that hold ``table`` (one a worker is creating this very moment may
        not have it yet: it has no rows either)."""
        found = []
        for path in sorted((self.folder / TIMELINE).glob(pattern)):
            db = _open_read_only(path)
            self._open.append(db)
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (table,)).fetchone():
                found.append((path, db))
        return found

    def close(self) -> None:
        for db in self._open:
            db.close()

    def family_of(self, identifier: str, max_profiles: int) -> Family:
        """The profiles ``identifier`` was logged under, and every profile merged with them
        (``family``)."""
        found = {profile for _, db in self._dbs for (profile,) in db.execute(
            "SELECT DISTINCT profile FROM identifiers WHERE identifier = ?", (identifier,))}
        return family(found, self._merged_with, max_profiles)

    def profiles(self, identifier: str) -> frozenset[str]:
        """``family_of``'s profiles, within the default bound."""
        return self.family_of(identifier, Settings().max_family_profiles).profiles

    def _merged_with(self, profiles: set[str]) -> set[str]:
        # the profiles travel as one JSON parameter: a family of any size is one statement,
        # where a list of SQL variables failed past SQLite's limit (250,000 on Debian)
        names = json.dumps(sorted(profiles))
        return {other for db in self._merges for (other,) in db.execute(
            "SELECT survivor FROM merges WHERE source IN (SELECT value FROM json_each(?1)) "
            "UNION SELECT source FROM merges WHERE survivor IN (SELECT value FROM json_each(?1))",
            (names,))}

    def locate(self, profiles: Iterable[str], first_ms: int, last_ms: int,
               limit: int) -> list[Located]:
        """The ``limit`` latest events of ``profiles`` in [first_ms, last_ms], oldest first."""
        names = json.dumps(sorted(profiles))
        found = []
        for partition, db in self._dbs:
            rows = db.execute(
                "SELECT event_ms, day, offset, idx FROM events "
                "WHERE profile IN (SELECT value FROM json_each(?)) AND event_ms BETWEEN ? AND ? "
                "ORDER BY event_ms DESC, offset DESC, idx DESC LIMIT ?",
                (names, _integer(first_ms), _integer(last_ms), _integer(limit)))
            found += [Located(ms, day, partition, offset, idx) for ms, day, offset, idx in rows]
        found.sort(key=lambda e: (e.event_ms, e.day, e.partition, e.offset, e.idx))
        return found[-limit:] if limit > 0 else []

    def read(self, located: list[Located]) -> Iterator[dict[str, Any]]:
        """The day-log lines of ``located``, in its order (a line whose file has gone since,
        by retention, is left out; a file that holds something else than day-log lines raises
        ``UnreadableLine``, naming it)."""
        by_file: dict[tuple[str, int], list[Located]] = defaultdict(list)
        for event in located:
            by_file[event.day, event.partition].append(event)
        lines: dict[Located, dict[str, Any]] = {}
        for (day, partition), events in by_file.items():
            path = self.folder / day / part_name(partition)
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                continue
            with f:
                size = f.seek(0, os.SEEK_END)
                lo = 0
                for event in sorted(events, key=lambda e: (e.offset, e.idx)):
                    try:
                        start, line = find_line(f, lo, size, (event.offset, event.idx))
                        if line is not None:
                            lines[event] = _record(line, start)
                            lo = start + len(line)
                    except UnreadableLine as exc:
                        raise UnreadableLine(f"{path}: {exc}") from None
        for event in located:
            if event in lines:
                yield lines[event]


def _integer(n: int) -> int:
    """``n`` within SQLite's integers (a bound past them means no bound)."""
    return max(-SQLITE_INTEGER - 1, min(n, SQLITE_INTEGER))


def _open_read_only(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                         check_same_thread=False)
    db.execute("PRAGMA query_only=ON")
    return db


def source_of(line: bytes) -> tuple[int, int]:
    """(offset, index) from a day-log line's ``_source`` (its last member)."""
    try:
        at = line.rfind(b'"_source"')
        if at < 0:
            raise ValueError("no _source")
        source = json.loads(line[line.index(b"{", at):].rstrip()[:-1])
        return int(source["offset"]), int(source.get("index", -1))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UnreadableLine("is not a day-log line (no _source)") from None


def _record(line: bytes, start: int) -> dict[str, Any]:
    try:
        record = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise UnreadableLine(f"the line at byte {start} is not a day-log line (not JSON)")
    return record


def find_line(f: IO[bytes], lo: int, size: int,
              key: tuple[int, int]) -> tuple[int, bytes | None]:
    """Binary search of a day file (lines in ``_source`` order) from byte ``lo`` (a line's
    start) for the line of ``key``: (its start, the line), or (lo, None). A line met on the
    way that is not a day-log line raises ``UnreadableLine``: the order is lost there."""
    hi = size
    while lo < hi:
        mid = (lo + hi) // 2
        if mid == 0:
            start = 0
        else:
            f.seek(mid - 1)
            f.readline()  # to the start of the next line
            start = f.tell()
        if start >= hi:  # no line starts in [mid, hi)
            hi = mid
            continue
        f.seek(start)
        line = f.readline()
        if not line.endswith(b"\n"):
            hi = start  # being written: not a line yet
            continue
        try:
            found = source_of(line)
        except UnreadableLine as exc:
            raise UnreadableLine(f"the line at byte {start} {exc}") from None
        if found == key:
            return start, line
        if found < key:
            lo = start + len(line)
        else:
            hi = start
    return lo, None
