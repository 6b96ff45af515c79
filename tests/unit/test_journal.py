"""The journal of a raw partition: what is appended is found again, across a rotation and a
restart; a torn last frame is cut off and a corrupt one skipped (``processors.journal``)."""

from logstore.lines import Indexed, LogLine
from processors.journal import FRAME, Entry, Journal


def entry(offset, size=10):
    return Entry(offset, [LogLine("p", "2027-01-15", 0, b"x" * size + b"\n", None,
                                  Indexed("p1", 1, "ce", ["cookie:c"]))],
                 [("t", b"k", b"v")], [("r", b"k", b"i")], [("visitors", b"k", b"data")])


def test_an_entry_is_found_by_its_offset_in_this_process_and_after_a_restart(tmp_path):
    journal = Journal(tmp_path)
    for offset in (3, 4, 7):
        journal.append(0, entry(offset))
    assert journal.position(0) == 7 and journal.find(0, 4) == entry(4)
    assert journal.find(0, 5) is None and journal.position(1) == -1
    journal.close()
    again = Journal(tmp_path)
    assert again.position(0) == 7 and again.find(0, 3) == entry(3) and again.last(0) == entry(7)
    again.close()


def test_a_rotation_keeps_one_previous_file_and_what_is_in_it(tmp_path):
    journal = Journal(tmp_path, max_bytes=300)
    for offset in range(13):
        journal.append(2, entry(offset, size=60))
    kept = [offset for offset in range(13) if journal.find(2, offset) is not None]
    assert kept == list(range(kept[0], 13)) and kept[0] > 0  # the oldest went
    assert len(list(tmp_path.glob("part-002.journal*"))) == 2
    journal.close()
    again = Journal(tmp_path, max_bytes=300)
    assert [o for o in range(13) if again.find(2, o) is not None] == kept
    assert again.position(2) == 12
    again.close()


def test_a_torn_last_frame_is_cut_off_and_a_corrupt_one_skipped(tmp_path):
    journal = Journal(tmp_path)
    for offset in (1, 2, 3):
        journal.append(0, entry(offset))
    journal.close()
    path = tmp_path / "part-000.journal"
    data = bytearray(path.read_bytes())
    second = FRAME.size + FRAME.unpack_from(data, 0)[0]  # where the second frame starts
    data[second + FRAME.size + 5] ^= 0xFF  # its payload no longer matches its checksum
    path.write_bytes(bytes(data) + FRAME.pack(100, 0) + b"torn")
    again = Journal(tmp_path)
    assert again.position(0) == 3 and again.find(0, 2) is None and again.corrupt == 1
    assert path.stat().st_size == len(data)  # the torn frame is gone
    again.append(0, entry(4))
    assert again.find(0, 4) == entry(4)
    again.close()
