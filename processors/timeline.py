"""The timeline index, the writing side (``logstore.timeline`` has its schema and readers).

Rows are derived from the journal entry alone (``INSERT OR IGNORE``), so writing an envelope's
lines again after a crash adds what the index lacks and nothing twice; the worker commits the
index with the day logs, before faust commits offsets.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from logstore.layout import TIMELINE, merges_stem, part_stem
from logstore.timeline import SCHEMA
from schemas.endpoints import Endpoint

log = logging.getLogger(__name__)

KNOWN_LINKS = 200_000  # identifier rows remembered as already in the index
MAX_OPEN = 64  # databases a worker holds open (each is three descriptors: db, wal, shm)
UNSHOWN = frozenset({Endpoint.PING})  # keep-alives: not a person's doing


class TimelineIndex:
    """The writing side: rows gathered in memory and inserted at ``commit``, one transaction
    per database (the write lock is held only then, and a worker's per-record cost is a list
    append); databases held open."""

    INSERTS = {"events": "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
               "identifiers": "INSERT OR IGNORE INTO identifiers VALUES (?, ?, ?)",
               "merges": "INSERT OR IGNORE INTO merges VALUES (?, ?, ?)"}

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dbs: OrderedDict[tuple[str, str], sqlite3.Connection] = OrderedDict()
        self._pending: dict[tuple[str, str, str], list[tuple[Any, ...]]] = defaultdict(list)
        self._linked: set[tuple[str, int, str, str, str]] = set()

    def add(self, project: str, partition: int,
            events: list[tuple[str, int, str, int, int]],
            identifiers: Iterable[tuple[str, str, str]]) -> None:
        """``events``: (profile, event_ms, day, offset, idx); ``identifiers``:
        (identifier, profile, day). Written at ``commit``."""
        stem = part_stem(partition)
        if events:
            self._pending[project, stem, "events"] += events
        for row in identifiers:
            key = (project, partition, *row)
            if key not in self._linked:
                if len(self._linked) >= KNOWN_LINKS:
                    self._linked.clear()
                self._linked.add(key)
                self._pending[project, stem, "identifiers"].append(row)

    def add_merge(self, project: str, partition: int, source: str, survivor: str,
                  day: str) -> None:
        """A merge decided in links ``partition`` on ``day``."""
        self._pending[project, merges_stem(partition), "merges"].append(
            (source, survivor, day))

    def remove_days(self, project: str, partition: int, days: list[str]) -> int:
        """Forget the events, identifiers and merges of these receipt days of partition
        ``partition`` (their files are gone); how many events."""
        self.commit()
        marks = ",".join("?" * len(days))
        removed = 0
        for stem, deletes in ((part_stem(partition), ("events", "identifiers")),
                              (merges_stem(partition), ("merges",))):
            if not days or not (self.root / project / TIMELINE / f"{stem}.sqlite").exists():
                continue
            with self._io(project, stem) as db:
                for table in deletes:
                    count = db.execute(f"DELETE FROM {table} WHERE day IN ({marks})",
                                       days).rowcount
                    removed += count if table == "events" else 0
                db.commit()
        self._linked = {key for key in self._linked if key[0] != project}
        return removed

    def commit(self) -> None:
        """Write what was added, durably (before the offsets it came from are committed),
        one transaction per database. A failure rolls back what was not committed and leaves
        the rows pending: the next commit tries them again (inserts are idempotent)."""
        by_db: dict[tuple[str, str], list[tuple[str, list[tuple[Any, ...]]]]] = defaultdict(list)
        for (project, stem, table), rows in self._pending.items():
            by_db[project, stem].append((table, rows))
        for (project, stem), tables in by_db.items():
            with self._io(project, stem) as db:
                try:
                    for table, rows in tables:
                        db.executemany(self.INSERTS[table], rows)
                    db.commit()
                except sqlite3.Error:
                    db.rollback()
                    raise
            for table, _ in tables:
                del self._pending[project, stem, table]

    def close(self) -> None:
        self.commit()
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()
        self._linked.clear()

    @contextlib.contextmanager
    def _io(self, project: str, stem: str) -> Iterator[sqlite3.Connection]:
        """The database, its failures as ``OSError``: like a day-log write that fails, the
        worker retries (its entries are journaled), never dead-letters."""
        try:
            yield self._db(project, stem)
        except sqlite3.Error as exc:
            raise OSError(f"timeline index {project}/{stem}: {exc}") from exc

    def _db(self, project: str, stem: str) -> sqlite3.Connection:
        db = self._dbs.get((project, stem))
        if db is not None:
            self._dbs.move_to_end((project, stem))
        else:
            if len(self._dbs) >= MAX_OPEN:  # between transactions: nothing uncommitted
                self._dbs.popitem(last=False)[1].close()
            path = self.root / project / TIMELINE / f"{stem}.sqlite"
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level="DEFERRED", timeout=30,
                                 check_same_thread=False)
            # WAL: the CLI reads while the worker writes; FULL: a commit is on disk
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            self._dbs[project, stem] = db
        return db


