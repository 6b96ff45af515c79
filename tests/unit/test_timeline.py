"""The timeline index: rows derived from the journal's lines (idempotent), lookups across
partitions and merges, the binary search of a day file, what a timeline hides, retention."""

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from logstore.layout import day_of
from logstore.lines import Indexed, LogLine, encode
from logstore.reading import UnreadableLine
from logstore.timeline import Timeline, family, find_line, persons, shown_range, source_of
from processors.daylog import DayLogWriter
from processors.timeline import TimelineIndex
from schemas.identity import Merge

DAY1 = 1_700_000_000_000          # 2023-11-14
DAY2 = DAY1 + 86_400_000          # 2023-11-15


def line(partition, offset, index, received_ms, profile, names, event="pv", kind="ce",
         event_ms=None, project="p"):
    """A Line as the visitors stage makes it, with what the index needs."""
    event_ms = event_ms or received_ms
    record = json.dumps({"event": event, "type": kind, "profile": profile,
                         "event_ms": event_ms, "received_ms": received_ms}).encode()
    return LogLine(project, day_of(received_ms), index, encode(record, partition, offset, index),
                   day_of(event_ms), Indexed(profile, event_ms, kind, names))


@pytest.fixture
def writer(tmp_path):
    w = DayLogWriter(tmp_path)
    yield w
    w.close()


def lookup(tmp_path, identifier, now_ms=DAY2 + 86_400_000, retention=None, limit=1000,
           project="p"):
    timeline = Timeline(tmp_path / project)
    try:
        first, last = shown_range(now_ms, retention)
        return [r["event"] for r in timeline.read(
            timeline.locate(timeline.profiles(identifier), first, last, limit))]
    finally:
        timeline.close()


def merged_with(merges):
    def neighbours(profiles):
        return {b for a, b in merges if a in profiles} | {a for a, b in merges if b in profiles}
    return neighbours


def test_family_follows_merges_both_ways_and_transitively():
    merges = merged_with([("b", "a"), ("c", "b"), ("x", "y")])
    assert family({"c"}, merges, 100).profiles == {"a", "b", "c"}
    assert family({"a"}, merges, 100).profiles == {"a", "b", "c"}
    assert family({"z"}, merges, 100).profiles == {"z"}
    assert family(set(), merges, 100).profiles == set()
    loop = merged_with([("a", "b"), ("b", "a")])
    assert family({"a"}, loop, 100).profiles == {"a", "b"}  # ends


def test_a_chain_longer_than_32_merges_is_followed_to_its_end():
    chain = [(f"p{n:02d}", f"p{n + 1:02d}") for n in range(40)]
    found = family({"p00"}, merged_with(chain), 100)
    assert len(found.profiles) == 41 and not found.cut


def test_a_family_past_the_bound_keeps_the_nearest_and_says_it_was_cut():
    star = [(f"junk{n}", "victim") for n in range(5)] + [("victim", "later")]
    found = family({"victim"}, merged_with(star), 4)
    assert found.profiles == {"victim", "junk0", "junk1", "junk2"} and found.cut
    assert family({"victim"}, merged_with(star), 7).cut is False
    assert family({"a", "b", "c"}, merged_with([]), 2).profiles == {"a", "b"}


GRAPHS = {
    "chain": [("b", "c"), ("c", "a")],
    "cycle of three": [("a", "b"), ("b", "c"), ("c", "a")],
    "two survivors": [("x", "b"), ("x", "a")],
    "two people": [("a", "b"), ("c", "d")],
    "deep chain": [(f"p{n:02d}", f"p{n + 1:02d}") for n in range(40)],
    "star": [(f"s{n}", "hub") for n in range(9)],
    "logged twice": [("a", "b"), ("a", "b"), ("b", "b")],
}


@pytest.mark.parametrize("merges", GRAPHS.values(), ids=GRAPHS.keys())
def test_query_and_timeline_join_the_same_profiles(merges):
    """One rule: ``persons`` (what ``trackpipe query`` counts) gives each profile the person
    whose profiles are exactly its ``family`` (what ``trackpipe timeline`` shows)."""
    person, cuts = persons(merges, 100)
    assert cuts == 0
    for profile in {p for pair in merges for p in pair}:
        same = {p for p, name in person.items() if name == person[profile]}
        assert family({profile}, merged_with(merges), 100).profiles == same, profile


def test_a_person_is_named_by_its_survivor():
    assert persons(GRAPHS["chain"], 100)[0] == {"a": "a", "b": "a", "c": "a"}
    assert set(persons(GRAPHS["cycle of three"], 100)[0].values()) == {"a"}  # no survivor
    assert set(persons(GRAPHS["two survivors"], 100)[0].values()) == {"a"}  # the first
    assert persons(GRAPHS["star"], 4)[1] == 1  # cut once; the rest are people of their own


def test_shown_range_hides_the_future_and_what_is_past_retention():
    now = DAY2 + 3_600_000
    assert shown_range(now, None) == (0, now)
    first, last = shown_range(now, 1)
    assert (first, last) == (DAY2 - DAY2 % 86_400_000, now)  # today only
    assert shown_range(now, 1, from_ms=now - 10, to_ms=now + 10) == (now - 10, now)


def test_a_person_across_partitions_and_a_merge_in_event_order(writer, tmp_path):
    writer.write(0, 1, [line(0, 1, 0, DAY1 + 3, "pa", ["cookie:c1"], "a-first"),
                        line(0, 1, 1, DAY1 + 9, "pa", ["cookie:c1", "email:e"], "a-later")])
    writer.write(1, 7, [line(1, 7, 0, DAY1 + 5, "pb", ["cookie:c2"], "b-before-merge"),
                        line(1, 7, 1, DAY1 + 6, "other", ["cookie:c3"], "someone else")])
    writer.write_merge(Merge("pb", "pa", "email:e", "p"), 4)
    writer.write(1, 8, [line(1, 8, 0, DAY2, "pa", ["cookie:c2", "id:u"], "b-after-merge"),
                        line(1, 8, 1, DAY2 + 1, "pa", ["cookie:c2"], "ping", kind="ping")])
    writer.sync()
    expected = ["a-first", "b-before-merge", "a-later", "b-after-merge"]
    for identifier in ("cookie:c1", "cookie:c2", "email:e", "id:u"):
        assert lookup(tmp_path, identifier) == expected, identifier
    assert lookup(tmp_path, "cookie:c3") == ["someone else"]
    assert lookup(tmp_path, "cookie:nobody") == []
    assert lookup(tmp_path, "id:u", limit=2) == ["a-later", "b-after-merge"]  # the latest


def test_writing_an_envelope_again_indexes_nothing_twice(writer, tmp_path):
    envelope = [line(0, 1, i, DAY1 + i, "pa", ["cookie:c1"], f"e{i}") for i in range(3)]
    writer.write(0, 1, envelope[:1])  # a crash after the first line...
    writer.close()
    again = DayLogWriter(tmp_path)
    again.write(0, 1, envelope)       # ...and the journal's entry applied again
    again.write(0, 1, envelope)
    again.sync()
    assert lookup(tmp_path, "cookie:c1") == ["e0", "e1", "e2"]
    again.close()


def test_a_crash_before_the_index_commit_is_made_good_by_the_journal(tmp_path):
    """The lines are in the file, their index rows were not committed (kill -9): applying
    the journal's entry again, as the next owner does, adds exactly those rows."""
    envelope = [line(0, 1, i, DAY1 + i, "pa", ["cookie:c1"], f"e{i}") for i in range(3)]
    subprocess.run([sys.executable, "-c", (
        "import os, sys, pathlib; from processors.daylog import DayLogWriter;"
        "from tests.unit.test_timeline import DAY1, line;"
        "DayLogWriter(pathlib.Path(sys.argv[1])).write(0, 1, [line(0, 1, i, DAY1 + i, 'pa', "
        "['cookie:c1'], "
        "f'e{i}') for i in range(3)]); os._exit(0)"), tmp_path],
        check=True, cwd=Path(__file__).parents[2])  # written, then the process is gone
    assert (tmp_path / "p" / day_of(DAY1) / "part-000.jsonl").read_text().count("\n") == 3
    assert lookup(tmp_path, "cookie:c1") == []  # nothing of it in the index
    again = DayLogWriter(tmp_path)
    assert again.write(0, 1, envelope) == 0  # the file holds every line already
    again.sync()
    assert lookup(tmp_path, "cookie:c1") == ["e0", "e1", "e2"]
    again.close()


def test_a_database_being_created_is_read_as_empty(writer, tmp_path):
    writer.write(0, 1, [line(0, 1, 0, DAY1, "pa", ["cookie:c1"], "logged")])
    writer.sync()
    # a worker that has just created its partition's file, not yet its tables
    sqlite3.connect(tmp_path / "p" / "_timeline" / "part-007.sqlite").close()
    sqlite3.connect(tmp_path / "p" / "_timeline" / "merges-007.sqlite").close()
    assert lookup(tmp_path, "cookie:c1") == ["logged"]


def test_future_events_show_once_their_time_has_come(writer, tmp_path):
    writer.write(0, 1, [line(0, 1, 0, DAY1, "pa", ["cookie:c1"], "now"),
                        line(0, 1, 1, DAY1, "pa", ["cookie:c1"], "later",
                             event_ms=DAY1 + 60_000)])
    writer.sync()
    assert lookup(tmp_path, "cookie:c1", now_ms=DAY1 + 1) == ["now"]
    assert lookup(tmp_path, "cookie:c1", now_ms=DAY1 + 60_000) == ["now", "later"]


def test_retention_hides_old_events_and_removes_their_entries(writer, tmp_path):
    writer.write(0, 1, [line(0, 1, 0, DAY2, "pa", ["cookie:c1"], "old", event_ms=DAY1),
                        line(0, 1, 1, DAY2, "pa", ["cookie:c1"], "new")])
    writer.write(0, 2, [line(0, 2, 0, DAY1, "pa", ["cookie:c1"], "old day")])
    writer.write_merge(Merge("x", "pa", "email:e", "p"), 0)
    writer.sync()
    assert lookup(tmp_path, "cookie:c1", now_ms=DAY2, retention=1) == ["new"]
    assert writer.remove("p", 0, [day_of(DAY1)]) == 1
    timeline = Timeline(tmp_path / "p")
    assert timeline.locate({"pa"}, 0, DAY2, 10)[0].day == day_of(DAY2)
    assert len(timeline.locate({"pa"}, 0, DAY2, 10)) == 2
    timeline.close()
    writer.write(0, 3, [line(0, 3, 0, DAY1, "pz", ["cookie:gone"], "an old day's only")])
    writer.sync()
    assert lookup(tmp_path, "cookie:gone", now_ms=DAY2) == ["an old day's only"]
    writer.remove("p", 0, [day_of(DAY1)])
    assert Timeline(tmp_path / "p").profiles("cookie:gone") == set()  # its identifier too


def test_the_binary_search_finds_every_line_and_only_those():
    lines = [encode(json.dumps({"n": n, "pad": "x" * (n * 37 % 300)}).encode(), 0, offset,
                    index)
             for n, (offset, index) in enumerate((o, i) for o in range(0, 60, 3)
                                                  for i in range(o % 4))]
    data = b"".join(lines)
    f = io.BytesIO(data)
    for expected in lines:
        start, found = find_line(f, 0, len(data), source_of(expected))
        assert found == expected and data[start:start + len(found)] == expected
    assert find_line(f, 0, len(data), (4, 0))[1] is None  # offset 4 is not in the file
    assert find_line(f, 0, len(data), (10**9, 0))[1] is None
    assert find_line(io.BytesIO(b""), 0, 0, (1, 0)) == (0, None)
    lo = 0  # as a timeline reads a file: each search starts after the line found before
    for expected in lines[::3]:
        start, found = find_line(f, lo, len(data), source_of(expected))
        assert found == expected
        lo = start + len(found)
    assert find_line(f, lo, len(data), source_of(lines[0]))[1] is None  # behind: not looked at


def test_a_family_of_130000_merged_profiles_is_looked_up(tmp_path):
    """Any sender can merge a fresh cookie's profile into a victim's by sending their email;
    a list of SQL variables failed past SQLite's limit ("too many SQL variables")."""
    index = TimelineIndex(tmp_path)
    index.add("p", 0, [("victim", DAY1, day_of(DAY1), 1, 0)],
              [("email:v", "victim", day_of(DAY1))])
    for n in range(130_000):
        index.add_merge("p", 0, f"junk{n:06d}", "victim", day_of(DAY1))
    index.close()
    timeline = Timeline(tmp_path / "p")
    try:
        found = timeline.family_of("email:v", 200_000)
        assert len(found.profiles) == 130_001 and not found.cut
        assert len(timeline.locate(found.profiles, 0, DAY2, 10)) == 1
        found = timeline.family_of("email:v", 10_000)
        assert len(found.profiles) == 10_000 and found.cut and "victim" in found.profiles
    finally:
        timeline.close()


def test_a_limit_beyond_sqlite_integers_means_no_limit(writer, tmp_path):
    writer.write(0, 1, [line(0, 1, 0, DAY1, "pa", ["cookie:c1"], "e")])
    writer.sync()
    timeline = Timeline(tmp_path / "p")
    try:
        assert len(timeline.locate({"pa"}, -2**70, 2**70, 10**30)) == 1
    finally:
        timeline.close()


@pytest.mark.parametrize("garbage", [
    b"not json at all\n", b'{"_source": 7}\n', b"[1, 2]\n", b'"_source"{\n',
    b'{"event": nope,"_source":{"partition":0,"offset":1,"index":4}}\n'])
def test_a_corrupt_day_log_line_is_an_error_naming_its_file(writer, tmp_path, garbage):
    writer.write(0, 1, [line(0, 1, n, DAY1 + n, "pa", ["cookie:c1"], f"e{n}") for n in range(9)])
    writer.close()
    path = tmp_path / "p" / day_of(DAY1) / "part-000.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4] + [garbage] + lines[5:]))
    at = len(b"".join(lines[:4]))
    with pytest.raises(UnreadableLine, match=f"{path}: the line at byte {at} is not a day-log"):
        lookup(tmp_path, "cookie:c1")
