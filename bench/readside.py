"""The read side on a project of a million logged actions: one timeline lookup, and a
group-by of `trackpipe query`, each against a baseline measured in the same run.

    make bench-readside     # or: .venv/bin/python bench/readside.py --actions 1000000

The day logs, their timeline index and the merges are written by the workers' own writer
(``processors.daylog.DayLogWriter``, as the visitors and identities stages call it): N actions
of N/10 people (and one busy person with one action in a thousand) over 30 receipt days and
12 raw partitions, lines shaped like the processors'
(about 700 bytes: properties, device, visit, source), one person in ten with two devices
merged into one profile. No Kafka is needed: what is measured is reading.

- **timeline**: ``Timeline.profiles`` + ``locate`` + ``read`` (what ``trackpipe timeline``
  runs once it has the project's retention) for random people; baseline: one scan of every
  day log of the project for the same person's lines (what answering without the index takes).
- **query**: ``SELECT event, count(*) … GROUP BY event`` and ``SELECT day, count(DISTINCT
  person) … GROUP BY day`` through ``logstore.sql`` (the views, as the CLI builds them);
  baseline: reading every day-log byte once (``cat``'s floor).

Medians of several runs; the machine is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from logstore import sql as logsql  # noqa: E402
from logstore.layout import PARTS, day_of  # noqa: E402
from logstore.lines import Indexed, LogLine, encode  # noqa: E402
from logstore.timeline import Timeline  # noqa: E402
from processors.daylog import DayLogWriter  # noqa: E402
from schemas.identity import Merge  # noqa: E402

PROJECT = "bench.example"
PARTITIONS = 12
DAYS = 30
EVENTS = ("pv", "pv", "pv", "pv", "click", "signup", "purchase")


def write_logs(root: Path, actions: int) -> int:
    """The project's day logs, index and merges; returns the bytes of day logs written."""
    people = max(1, actions // 10)
    start = (int(time.time() * 1000) // 86_400_000 - DAYS) * 86_400_000
    span = DAYS * 86_400_000
    writer = DayLogWriter(root)
    rng = random.Random(7)
    offsets = [0] * PARTITIONS
    written = 0
    for first in range(0, actions, 3000):  # 1,000 envelopes of 3 at a time, in time order
        batch = range(first, min(actions, first + 3000))
        by_partition: dict[int, list] = {}
        for n in batch:
            person = rng.randrange(people) if n % 1000 else people  # and one busy person
            device = f"cookie:d{person}" if person % 10 or n % 2 else f"cookie:d{person}b"
            profile = f"p{person}" if device.endswith(f"d{person}") else f"p{person}b"
            received = start + span * n // actions
            partition = zlib.crc32(device.encode()) % PARTITIONS
            by_partition.setdefault(partition, []).append((n, person, device, profile,
                                                           received))
        for partition, items in by_partition.items():
            for at in range(0, len(items), 3):
                offset = offsets[partition]
                offsets[partition] += 1
                lines = []
                for index, (n, person, device, profile, received) in enumerate(
                        items[at:at + 3]):
                    event = EVENTS[n % len(EVENTS)]
                    record = {
                        "id": f"{n:032x}", "project": PROJECT, "type": "ce", "event": event,
                        "profile": profile, "visitor_key": device, "visit": f"v{person}-{n // 50}",
                        "event_ms": received, "clock": "sender", "future": False,
                        "received_ms": received, "ip": "192.0.2.1",
                        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                        "cookie_assigned": False, "over_quota": False,
                        "properties": {"url": f"https://shop.example/p/{n % 500}?utm_campaign="
                                       f"c{n % 7}", "campaign_name": f"c{n % 7}",
                                       "title": "A product page"},
                        "visitor_properties": {"name": f"Person {person}"},
                        "visit_properties": {"ab": "b" if person % 2 else "a"},
                        "org_properties": {}, "browser": "Firefox", "os": "Linux",
                        "device": "desktop", "builtins": {"screen": "1920x1080",
                                                         "language": "en"}, "meta": {}}
                    data = encode(orjson.dumps(record), partition, offset, index)
                    written += len(data)
                    lines.append(LogLine(PROJECT, day_of(received), index, data,
                                         day_of(received),
                                         Indexed(profile, received, "ce", [device])))
                writer.write(partition, offset, lines)
        if first % 30_000 == 0:
            writer.sync()
    for person in range(0, people, 10):  # the second devices' profiles were merged
        writer.write_merge(Merge(f"p{person}b", f"p{person}", f"email:{person}@example.com",
                                 PROJECT, f"cookie:d{person}b", start), person % PARTITIONS)
    writer.sync()
    writer.close()
    return written


def timeline_lookup(folder: Path, device: str) -> int:
    timeline = Timeline(folder)
    try:
        found = list(timeline.read(timeline.locate(timeline.profiles(device), 0, 2**62,
                                                   1000)))
    finally:
        timeline.close()
    return len(found)


def scan_for(folder: Path, device: str) -> int:
    """The baseline: every line of every day log, parsed, kept when it is the person's."""
    needle = f'"visitor_key":"{device}"'.encode()
    found = 0
    for path in folder.glob(f"*/{PARTS}"):
        with open(path, "rb") as f:
            for line in f:
                if needle in line and orjson.loads(line)["visitor_key"] == device:
                    found += 1
    return found


def timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def read_all(folder: Path) -> int:
    size = 0
    for path in folder.glob(f"*/{PARTS}"):
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="lookups and queries timed")
    parser.add_argument("--dir", type=Path, help="keep the data here (default: a temp dir)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="trackpipe-readside-"))
    folder = root / PROJECT
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, DuckDB {logsql.duckdb.__version__}")
    if not folder.exists():
        elapsed, size = timed(write_logs, root, args.actions)
        print(f"wrote {args.actions:,} actions ({size / 1e6:,.0f} MB of day logs, with the "
              f"index) in {elapsed:.0f} s: {args.actions / elapsed:,.0f} lines/s")
    index_mb = sum(p.stat().st_size for p in (folder / "_timeline").glob("*")) / 1e6
    print(f"timeline index: {index_mb:,.0f} MB")

    rng = random.Random(11)
    people = max(1, args.actions // 10)
    devices = [f"cookie:d{rng.randrange(people) // 10 * 10}b" for _ in range(args.runs)]
    lookups = [timed(timeline_lookup, folder, d) for d in devices]  # merged people: 2 devices
    scans = [timed(scan_for, folder, d) for d in devices[:3]]
    lookup_s = statistics.median(t for t, _ in lookups)
    scan_s = statistics.median(t for t, _ in scans)
    events = statistics.median(n for _, n in lookups)
    print(f"\ntimeline of one person (median {events:.0f} events, two devices merged), "
          f"median of {len(lookups)}: {lookup_s * 1000:.1f} ms "
          f"(spread {min(t for t, _ in lookups) * 1000:.1f}-"
          f"{max(t for t, _ in lookups) * 1000:.1f})")
    print(f"baseline, scanning every day log for them, median of {len(scans)}: "
          f"{scan_s:.1f} s ({scan_s / lookup_s:,.0f}x)")
    busy = [timed(timeline_lookup, folder, f"cookie:d{people}b") for _ in range(args.runs)]
    print(f"timeline of the busy person ({busy[0][1]} events, --limit 1000), median of "
          f"{len(busy)}: {statistics.median(t for t, _ in busy) * 1000:.1f} ms")

    read_s = statistics.median(timed(read_all, folder)[0] for _ in range(3))
    for sql in ("SELECT event, count(*) AS actions FROM actions GROUP BY event",
                "SELECT day, count(DISTINCT person) AS people FROM actions GROUP BY day"):
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            columns, rows = logsql.run(logsql.connect(folder), sql)
            times.append(time.perf_counter() - started)
        print(f"\nquery: {sql}\n  {len(rows)} rows, median of {len(times)}: "
              f"{statistics.median(times):.2f} s (spread {min(times):.2f}-{max(times):.2f}), "
              f"{args.actions / statistics.median(times):,.0f} actions/s")
    print(f"baseline, reading every day-log byte once (page cache warm), median of 3: "
          f"{read_s:.2f} s")
    print(f"\ndata kept in {root}" if args.dir else "")


if __name__ == "__main__":
    main()
