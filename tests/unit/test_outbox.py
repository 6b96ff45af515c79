"""The outbox keeps each record's outputs as bytes, finds them by offset, and rotates."""

from processors.outbox import Outbox


def test_outputs_are_found_by_offset_as_they_were_recorded(tmp_path):
    box = Outbox(tmp_path)
    box.record(3, 10, [("t.actions", b"k", b'{"a":1}'), ("t.links", None, b"\x00\xff")])
    box.record(3, 11, [])
    box.close()
    again = Outbox(tmp_path)  # a new process after a crash
    assert again.find(3, 10) == [("t.actions", b"k", b'{"a":1}'), ("t.links", None, b"\x00\xff")]
    assert again.find(3, 11) == []
    assert again.find(3, 12) is None and again.find(4, 10) is None


def test_a_torn_last_line_is_ignored(tmp_path):
    box = Outbox(tmp_path)
    box.record(0, 1, [("t", b"k", b"v")])
    box.close()
    with open(tmp_path / "part-000.jsonl", "ab") as f:
        f.write(b'{"o":2,"out":[["t","a')
    assert Outbox(tmp_path).find(0, 1) == [("t", b"k", b"v")]
    assert Outbox(tmp_path).find(0, 2) is None


def test_rotation_keeps_the_previous_file(tmp_path):
    box = Outbox(tmp_path, max_bytes=200)
    for offset in range(20):
        box.record(1, offset, [("t", b"k", b"x" * 40)])
    box.close()
    found = Outbox(tmp_path)
    assert found.find(1, 19) is not None and found.find(1, 0) is None  # old enough: gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-001.jsonl", "part-001.jsonl.1"]


def test_forget_rereads_what_another_worker_wrote(tmp_path):
    mine, theirs = Outbox(tmp_path), Outbox(tmp_path)
    assert mine.find(2, 5) is None
    theirs.record(2, 5, [("t", b"k", b"v")])
    theirs.close()
    assert mine.find(2, 5) is None  # loaded before: cached
    mine.forget([2])
    assert mine.find(2, 5) == [("t", b"k", b"v")]
