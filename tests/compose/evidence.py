"""What a failed compose run keeps for its analysis (issue 21), before `down -v` removes it:
the day logs and the journal of the shared volumes, each worker container's log, and a report
of every event id the day logs hold more than once: each line's file, line number and source
(raw partition, envelope offset, index), the journal entries that hold it, and where the raw
topic holds it (one copy handled twice, or two copies of one request).

``report`` reads copies on the host: nothing here touches a container. Pure but for reading.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import msgpack

from processors.journal import FRAME  # a frame: payload length, crc32 of the payload
from schemas import envelope
from schemas.raw import RawRecord


class Line(NamedTuple):
    file: str          # below the logs folder
    number: int        # 1-based
    partition: int
    offset: int
    index: int
    received_ms: int


class Frame(NamedTuple):
    file: str          # below the journal folder
    number: int        # 1-based, in the file's order
    offset: int
    ids: tuple[str, ...]  # the event ids of its lines


def day_log_lines(logs: Path) -> list[tuple[str, Line]]:
    """Every (event id, Line) of every day-log file below ``logs`` (every project's), in
    file order."""
    found = []
    for path in sorted(logs.glob("*/*/part-*.jsonl")):
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    record = json.loads(raw)
                    source = record["_source"]
                    found.append((record["id"], Line(
                        str(path.relative_to(logs)), number, source["partition"],
                        source["offset"], source.get("index", -1),
                        record.get("received_ms", -1))))
                except (ValueError, KeyError, TypeError):
                    continue
    return found


def journal_frames(journal: Path) -> dict[str, list[Frame]]:
    """Every whole frame of every journal file below ``journal``, in file order."""
    frames: dict[str, list[Frame]] = {}
    for path in sorted(journal.glob("*.journal*")):
        data, pos, found = path.read_bytes(), 0, []
        while pos + FRAME.size <= len(data):
            size, crc = FRAME.unpack_from(data, pos)
            payload = data[pos + FRAME.size:pos + FRAME.size + size]
            pos += FRAME.size + size
            if len(payload) < size or zlib.crc32(payload) != crc:
                continue
            offset, lines = msgpack.unpackb(payload, use_list=True)[:2]
            ids = []
            for line in lines:
                try:
                    ids.append(json.loads(line[3])["id"])
                except (ValueError, KeyError, TypeError, IndexError):
                    continue
            found.append(Frame(path.name, len(found) + 1, offset, tuple(ids)))
        frames[path.name] = found
    return frames


def journal_anomalies(frames: dict[str, list[Frame]]) -> list[str]:
    """Per journal file: offsets it holds more than once, and where its offsets go back (two
    writers, or one that wrote on after the partition had moved)."""
    found = []
    for name, entries in frames.items():
        twice = {o: n for o, n in Counter(f.offset for f in entries).items() if n > 1}
        if twice:
            found.append(f"{name}: {len(twice)} offsets journaled more than once, e.g. "
                         f"{sorted(twice)[:10]}")
        for before, after in zip(entries, entries[1:], strict=False):
            if after.offset <= before.offset:
                found.append(f"{name}: frame {after.number} (offset {after.offset}) after "
                             f"frame {before.number} (offset {before.offset})")
    return found


def raw_copies(messages: Iterable[object], ids: set[str]) -> dict[str, list[tuple]]:
    """Where the raw topic's ``messages`` hold each of ``ids``: (partition, offset, index)."""
    found: dict[str, list[tuple]] = defaultdict(list)
    for m in messages:
        try:
            items = envelope.unpack(m.value)
        except envelope.EnvelopeError:
            continue
        for index, item in enumerate(items):
            try:
                event_id = RawRecord.from_obj(item).id
            except Exception:  # noqa: BLE001 - a bad record is no evidence
                continue
            if event_id in ids:
                found[event_id].append((m.partition, m.offset, index))
    return found


def report(logs: Path, journal: Path, raw: Iterable[object] | None = None) -> str:
    """What the copies say of every event id logged more than once."""
    lines = day_log_lines(logs)
    counts = Counter(event_id for event_id, _ in lines)
    repeated = {i for i, n in counts.items() if n > 1}
    frames = journal_frames(journal)
    out = [f"{len(lines)} day-log lines, {len(counts)} event ids, {len(repeated)} of them "
           f"logged more than once; journal files: "
           + ", ".join(f"{name} ({len(entries)} entries)" for name, entries in frames.items())]
    out += [f"journal anomaly: {a}" for a in journal_anomalies(frames)]
    in_journal: dict[str, list[Frame]] = defaultdict(list)
    for entries in frames.values():
        for frame in entries:
            for event_id in frame.ids:
                if event_id in repeated:
                    in_journal[event_id].append(frame)
    copies = raw_copies(raw, repeated) if raw is not None else {}
    same_source = 0
    for event_id in sorted(repeated):
        where = [line for i, line in lines if i == event_id]
        if len({(w.partition, w.offset, w.index) for w in where}) == 1:
            same_source += 1
        out.append(f"{event_id}: logged {len(where)} times")
        out += [f"  line {w.file}:{w.number} partition {w.partition} offset {w.offset} index "
                f"{w.index} received_ms {w.received_ms}" for w in where]
        out += [f"  journal {f.file} frame {f.number} offset {f.offset}"
                for f in in_journal.get(event_id, [])]
        if raw is not None:
            out.append(f"  raw copies (partition, offset, index): {copies.get(event_id, [])}")
    if repeated:
        out.insert(1, f"{same_source} of the {len(repeated)} repeated ids repeat one source "
                      "(partition, offset, index): one raw copy written twice")
    return "\n".join(out)
