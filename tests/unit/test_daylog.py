"""The day-log writer: one write per file per envelope, completion after a crash, torn and
long lines, the event-day index, names that could leave the folder."""

import json

import pytest

from logstore.layout import day_of
from logstore.lines import LogLine, encode
from logstore.reading import UnreadableLine, read_lines
from processors.daylog import DayLogWriter, last_source

DAY1 = 1_700_000_000_000          # 2023-11-14
DAY2 = DAY1 + 86_400_000          # 2023-11-15


@pytest.fixture
def writer(tmp_path):
    w = DayLogWriter(tmp_path)
    yield w
    w.close()


def line(partition, offset, index, received_ms, event_ms=None, name="e", project="p",
         padding=0):
    """A Line as the visitors stage makes it."""
    record = json.dumps({"event": name, "event_ms": event_ms or received_ms,
                         "received_ms": received_ms,
                         "pad": "x" * padding}).encode()
    data = encode(record, partition, offset, index)
    return LogLine(project, day_of(received_ms), index, data, day_of(event_ms or received_ms))


def test_lines_go_to_the_receipt_day_file_of_their_partition(writer, tmp_path):
    writer.write(3, 10, [line(3, 10, 0, DAY1), line(3, 10, 1, DAY2)])
    first = tmp_path / "p" / day_of(DAY1) / "part-003.jsonl"
    assert json.loads(first.read_text())["_source"] == {"partition": 3, "offset": 10,
                                                        "index": 0}
    assert (tmp_path / "p" / day_of(DAY2) / "part-003.jsonl").exists()


def test_writing_an_envelope_again_adds_only_what_each_file_lacks(writer, tmp_path):
    envelope = [line(0, 5, i, DAY1, project=project, name=f"e{i}")
                for i, project in enumerate(["a", "b", "a", "b"])]
    writer.write(0, 5, [envelope[0], envelope[2]])  # a's file, then the crash
    writer.close()
    again = DayLogWriter(tmp_path)
    assert again.write(0, 5, envelope) == 2
    assert again.write(0, 5, envelope) == 0  # complete now: nothing twice
    assert again.write(0, 4, [line(0, 4, 0, DAY1, project="a")]) == 0  # older: held
    again.close()
    assert [r["event"] for r in read_lines(tmp_path, "a", [day_of(DAY1)])] == ["e0", "e2"]
    assert [r["event"] for r in read_lines(tmp_path, "b", [day_of(DAY1)])] == ["e1", "e3"]


def test_the_position_is_found_behind_a_last_line_longer_than_any_read_chunk(writer, tmp_path):
    writer.write(0, 1, [line(0, 1, 0, DAY1)])
    writer.write(0, 2, [line(0, 2, 0, DAY1, padding=300_000)])
    path = tmp_path / "p" / day_of(DAY1) / "part-000.jsonl"
    assert last_source(path) == (2, 0)
    assert writer.recover_position(0) == 2 and writer.recover_position(1) == -1


def test_a_torn_last_line_is_cut_before_the_next_write(writer, tmp_path):
    writer.write(0, 0, [line(0, 0, 0, DAY1, name="ok")])
    writer.close()
    path = tmp_path / "p" / day_of(DAY1) / "part-000.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"event":"torn","_source":{"partition":0,"off' + b"y" * 100_000)
    again = DayLogWriter(tmp_path)
    assert last_source(path) == (0, 0)
    again.write(0, 1, [line(0, 1, 0, DAY1, name="retried")])
    again.close()
    assert [r["event"] for r in read_lines(tmp_path, "p", [day_of(DAY1)])] == ["ok", "retried"]


def test_a_line_written_before_envelopes_counts_as_its_whole_record(tmp_path):
    path = tmp_path / "p" / day_of(DAY1) / "part-000.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"event":"old","_source":{"partition":0,"offset":9}}\n')
    assert last_source(path)[0] == 9 and last_source(path) > (9, 1000)


def test_a_short_write_is_cut_back_and_raised(tmp_path):
    """A full disk takes half a line, then nothing: the file is left as it was."""
    from processors.appending import write_all

    path = tmp_path / "log"
    path.write_bytes(b"ok\n")

    class HalfFull:
        def __init__(self, real):
            self.real, self.calls = real, 0

        def write(self, data):
            self.calls += 1
            if self.calls == 1:
                return self.real.write(bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")

        def truncate(self, size):
            return self.real.truncate(size)

    with open(path, "ab", buffering=0) as f:
        with pytest.raises(OSError):
            write_all(HalfFull(f), b"a whole line\n", 3)
        write_all(f, b"retried\n", 3)
    assert path.read_bytes() == b"ok\nretried\n"


def test_reads_by_event_day_find_late_and_early_events_through_the_index(writer, tmp_path):
    writer.write(0, 0, [line(0, 0, 0, DAY2, DAY1, "late"),  # happened on day 1, received day 2
                     line(0, 0, 1, DAY1, DAY2, "early"),    # future: received day 1
                     line(0, 0, 2, DAY1, DAY1, "on-time")])
    by_event = lambda d: sorted(r["event"] for r in read_lines(tmp_path, "p", [d], {d}))  # noqa: E731
    assert by_event(day_of(DAY1)) == ["late", "on-time"]
    assert by_event(day_of(DAY2)) == ["early"]
    assert (tmp_path / "p" / "_index" / day_of(DAY1)).read_text() == day_of(DAY2) + "\n"


@pytest.mark.parametrize("project", ["../etc", "a/b", "..", "", "x\x00y"])
def test_names_that_could_leave_the_folder_are_refused(writer, tmp_path, project):
    with pytest.raises(ValueError):
        writer.write(0, 0, [line(0, 0, 0, DAY1, project=project)])
    assert list(tmp_path.iterdir()) == []


def test_a_day_reads_in_receipt_order_across_its_partition_files(writer, tmp_path):
    """A signup must not print before the pageview that came first because they are in two
    partitions' files."""
    writer.write(1, 0, [line(1, 0, 0, DAY1 + 30, name="signup")])
    writer.write(0, 0, [line(0, 0, 0, DAY1 + 10, name="pageview"),
                        line(0, 0, 1, DAY1 + 50, name="purchase")])
    names = [r["event"] for r in read_lines(tmp_path, "p", [day_of(DAY1)])]
    assert names == ["pageview", "signup", "purchase"]


def test_a_corrupt_line_is_an_error_naming_its_file_and_byte(writer, tmp_path):
    writer.write(0, 0, [line(0, 0, 0, DAY1, name="ok")])
    writer.close()
    path = tmp_path / "p" / day_of(DAY1) / "part-000.jsonl"
    good = path.read_bytes()
    for garbage in (b"{not json\n", b"[1]\n", b'"a string"\n'):
        path.write_bytes(good + garbage)
        with pytest.raises(UnreadableLine, match=f"{path}: the line at byte {len(good)} "):
            list(read_lines(tmp_path, "p", [day_of(DAY1)]))


def test_lines_with_members_of_unexpected_kinds_are_read_in_order(writer, tmp_path):
    writer.write(0, 0, [line(0, 0, 0, DAY1, name="first")])
    writer.close()
    day = tmp_path / "p" / day_of(DAY1)
    (day / "part-001.jsonl").write_text(
        '{"event": "odd", "received_ms": "soon", "event_ms": 1e400, "id": 7}\n'
        '{"event": "far", "received_ms": 2, "event_ms": 99999999999999999999}\n'
        '{"event": "none"}\n')
    assert sorted(r["event"] for r in read_lines(tmp_path, "p", [day_of(DAY1)])) == [
        "far", "first", "none", "odd"]
    assert [r["event"] for r in read_lines(tmp_path, "p", [day_of(DAY1)], {day_of(DAY1)})] == [
        "first"]


def test_days_before_the_year_1000_are_named_with_four_digits():
    assert day_of(-30_610_224_000_000) == "1000-01-01"
    assert day_of(-30_610_224_000_001) == "0999-12-31"
