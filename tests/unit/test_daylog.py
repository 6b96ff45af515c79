import json

import pytest

from processors.daylog import DayLogWriter, day_of, read_lines

DAY1 = 1_700_000_000_000          # 2023-11-14
DAY2 = DAY1 + 86_400_000          # 2023-11-15


@pytest.fixture
def writer(tmp_path):
    w = DayLogWriter(tmp_path)
    yield w
    w.close()


def line(event_ms, name="e"):
    return {"event": name, "event_ms": event_ms}


def test_lines_go_to_the_receipt_day_file_of_their_partition(writer, tmp_path):
    assert writer.write(3, 10, "shop.example", DAY1, line(DAY1))
    assert writer.write(4, 7, "shop.example", DAY2, line(DAY2))
    first = tmp_path / "shop.example" / day_of(DAY1) / "part-003.jsonl"
    record = json.loads(first.read_text())
    assert record["_source"] == {"partition": 3, "offset": 10}
    assert (tmp_path / "shop.example" / day_of(DAY2) / "part-004.jsonl").exists()


def test_offsets_already_written_are_skipped_also_after_a_restart(writer, tmp_path):
    for offset in range(5):
        writer.write(0, offset, "p", DAY1, line(DAY1, f"e{offset}"))
    assert not writer.write(0, 3, "p", DAY1, line(DAY1))
    writer.close()
    again = DayLogWriter(tmp_path)
    assert again.position(0) == 4 and again.position(1) == -1
    assert [again.write(0, o, "p", DAY1, line(DAY1, f"e{o}")) for o in (3, 4, 5)] == [
        False, False, True]
    again.close()
    names = [r["event"] for r in read_lines(tmp_path, "p", [day_of(DAY1)])]
    assert names == ["e0", "e1", "e2", "e3", "e4", "e5"]


def test_a_torn_last_line_is_cut_and_written_again(writer, tmp_path):
    writer.write(0, 0, "p", DAY1, line(DAY1, "ok"))
    writer.close()
    path = tmp_path / "p" / day_of(DAY1) / "part-000.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"event":"torn","_source":{"partition":0,"off')
    again = DayLogWriter(tmp_path)
    assert again.position(0) == 0
    assert again.write(0, 1, "p", DAY1, line(DAY1, "retried"))
    again.close()
    assert [r["event"] for r in read_lines(tmp_path, "p", [day_of(DAY1)])] == ["ok", "retried"]


def test_reads_by_event_day_find_late_and_early_events_through_the_index(writer, tmp_path):
    writer.write(0, 0, "p", DAY2, line(DAY1, "late"))     # happened on day 1, received day 2
    writer.write(0, 1, "p", DAY1, line(DAY2, "early"))    # future: received day 1
    writer.write(0, 2, "p", DAY1, line(DAY1, "on-time"))
    by_event = lambda d: sorted(r["event"] for r in read_lines(tmp_path, "p", [d], {d}))  # noqa: E731
    assert by_event(day_of(DAY1)) == ["late", "on-time"]
    assert by_event(day_of(DAY2)) == ["early"]
    assert (tmp_path / "p" / "_index" / day_of(DAY1)).read_text() == day_of(DAY2) + "\n"


@pytest.mark.parametrize("project", ["../etc", "a/b", "..", "", "x\x00y"])
def test_names_that_could_leave_the_folder_are_refused(writer, tmp_path, project):
    with pytest.raises(ValueError):
        writer.write(0, 0, project, DAY1, line(DAY1))
    assert list(tmp_path.iterdir()) == []
