"""Where a project's day logs and their indexes are, and what each file is called. Pure.

``<logs>/<project>/<YYYY-MM-DD>/part-NNN.jsonl``: one file per raw partition and receipt day
(UTC), written by the one worker that holds the partition; ``merges-NNN.jsonl`` beside them,
the merges decided in links partition NNN that day; ``<project>/_index/<event day>``: the
receipt days that hold lines of that event day; ``<project>/_timeline/part-NNN.sqlite`` and
``merges-NNN.sqlite``: the timeline index. Project names are checked
(``schemas.project.check_name``) before they become a folder: no name leaves the logs.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from pathlib import Path

from schemas.project import check_name

DAY = re.compile(r"\d{4}-\d{2}-\d{2}")  # a receipt day's folder (nothing else is one)
DAY_MS = 86_400_000
INDEX = "_index"        # event day → receipt days
TIMELINE = "_timeline"  # the timeline index's databases
PARTS = "part-*.jsonl"
MERGES = "merges-*.jsonl"
PART_DBS = "part-*.sqlite"     # in TIMELINE
MERGE_DBS = "merges-*.sqlite"  # in TIMELINE


def day_of(ms: int) -> str:
    """The UTC day of an epoch time in milliseconds, ``YYYY-MM-DD`` (``0999-…``, not ``999``)."""
    return _day_name(ms // DAY_MS)


@functools.lru_cache(maxsize=1024)
def _day_name(day: int) -> str:  # formatted once per day, not once per record
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


def project_dir(root: Path, project: str) -> Path:
    return root / check_name(project)


def part_stem(partition: int) -> str:
    """The name, without suffix, of a raw partition's files (day log, index, journal)."""
    return f"part-{partition:03d}"


def part_name(partition: int) -> str:
    """A raw partition's day-log file in a day's folder."""
    return f"{part_stem(partition)}.jsonl"


def merges_stem(partition: int) -> str:
    return f"merges-{partition:03d}"


def merges_name(partition: int) -> str:
    """The file of a day's folder that holds the merges decided in links ``partition``."""
    return f"{merges_stem(partition)}.jsonl"
