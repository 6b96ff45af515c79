"""How the read commands print rows: CSV, JSON lines, and an aligned table, in chunks, with
nothing a sender wrote able to steer the operator's terminal."""

import io
import json
import re

import pytest

from trackpipe.cli import output


def printed(columns, rows, fmt):
    out = io.StringIO()
    output.write(columns, [rows], fmt, out)
    return out.getvalue()


def test_formats():
    columns, rows = ["day", "n", "note"], [("2023-11-14", 3, None), ("2023-11-15", 12, "a,b")]
    assert printed(columns, rows, "csv") == "day,n,note\n2023-11-14,3,\n2023-11-15,12,\"a,b\"\n"
    assert [json.loads(x) for x in printed(columns, rows, "json").splitlines()] == [
        {"day": "2023-11-14", "n": 3, "note": None}, {"day": "2023-11-15", "n": 12,
                                                       "note": "a,b"}]
    assert printed(columns, rows, "table").splitlines() == [
        "day          n  note", "----------  --  ----", "2023-11-14   3",
        "2023-11-15  12  a,b", "(2 rows)"]


def test_rows_arrive_in_chunks_and_a_table_keeps_only_what_it_shows():
    chunks = [[(n, "x" * 10_000)] for n in range(3)]
    out = io.StringIO()
    output.write(["n", "wide"], iter(chunks), "table", out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "(3 rows)" and max(len(line) for line in lines) <= 3 + 60
    assert lines[2].endswith("x…")
    out = io.StringIO()
    output.write(["n"], iter([[(1,)], [], [(2,), (3,)]]), "csv", out)
    assert out.getvalue() == "n\n1\n2\n3\n"


# what no printed text may hold but the newlines that end its lines
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
                    "\u2066-\u2069\ud800-\udfff]")
HOSTILE = [
    ("\x1b]0;PWNED\x07", "\\x1b]0;PWNED\\x07"),        # retitles the window
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),              # clears the screen
    ("ok\rforged", "ok\\rforged"),                     # overwrites its own line
    ("two\nlines", "two\\nlines"),                     # forges a row
    ("tab\there", "tab\\there"),
    ("back\x08\x08space\x7f", "back\\x08\\x08space\\x7f"),
    ("\x9b31m c1 csi", "\\x9b31m c1 csi"),              # C1: CSI in one character
    ("evil\u202etxt.exe", "evil\\u202etxt.exe"),        # right-to-left override
    ("\u2066isolate\u2069 \u200f \u061c", "\\u2066isolate\\u2069 \\u200f \\u061c"),
    ("line\u2028sep", "line\\u2028sep"),
    ("lone \ud800 surrogate", "lone \\ud800 surrogate"),  # UTF-8 cannot print it
    ("café 東京 🙂 a\\x1b", "café 東京 🙂 a\\x1b"),          # readable text stays as it is
]


@pytest.mark.parametrize("value, shown", HOSTILE, ids=[repr(v)[:20] for v, _ in HOSTILE])
def test_controls_and_bidi_overrides_are_escaped_in_every_format(value, shown):
    for fmt in ("table", "csv"):
        text = printed([value], [(value,), ({"nested": value},)], fmt)
        assert shown in text, fmt
        assert text.encode("utf-8")  # printable: no lone surrogate left
        assert not UNSAFE.search(text), fmt
        assert text.count("\n") == (5 if fmt == "table" else 3), text
    text = printed([value], [(value,)], "json")
    assert json.loads(text) == {value: value}  # the same JSON to a parser
    assert text.encode("utf-8") and not UNSAFE.search(text)


def test_json_text_keeps_indentation_and_escapes_values():
    text = output.json_text({"a": ["\x1b\u202e\x85"]}, indent=2)
    assert text == '{\n  "a": [\n    "\\u001b\\u202e\\u0085"\n  ]\n}'


@pytest.fixture
def kolkata(monkeypatch):
    """A local time zone with a half-hour offset, so that an offset cannot pass by chance."""
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


MS = 1_700_000_000_123  # 2023-11-14 22:13:20.123 UTC


def test_times_for_people_are_local_with_their_offset_to_the_millisecond(kolkata):
    import datetime as dt

    assert output.when(MS) == "2023-11-15 03:43:20.123+05:30"
    naive_utc = dt.datetime(2023, 11, 14, 22, 13, 20, 123000)  # as the SQL views give times
    assert output.when(naive_utc) == output.when(MS)
    assert output.when(naive_utc.replace(tzinfo=dt.UTC)) == output.when(MS)
    assert output.when(253_402_300_799_999 * 10) == str(253_402_300_799_999 * 10)


def test_tables_and_csv_show_times_for_people_and_json_in_epoch_ms(kolkata):
    import datetime as dt

    columns, rows = ["event_time", "day"], [(dt.datetime(2023, 11, 14, 22, 13, 20, 123000),
                                            dt.date(2023, 11, 14))]
    assert printed(columns, rows, "table").splitlines()[2] == \
        "2023-11-15 03:43:20.123+05:30  2023-11-14"
    assert printed(columns, rows, "csv").splitlines()[1] == \
        "2023-11-15 03:43:20.123+05:30,2023-11-14"
    assert json.loads(printed(columns, rows, "json")) == {"event_time": MS, "day": "2023-11-14"}
