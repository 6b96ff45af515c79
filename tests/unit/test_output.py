"""How the read commands print rows: CSV, JSON lines, and an aligned table."""

import io
import json

from trackpipe.cli import output


def test_formats():
    columns, rows = ["day", "n", "note"], [("2023-11-14", 3, None), ("2023-11-15", 12, "a,b")]
    out = io.StringIO()
    output.write(columns, rows, "csv", out)
    assert out.getvalue() == "day,n,note\n2023-11-14,3,\n2023-11-15,12,\"a,b\"\n"
    out = io.StringIO()
    output.write(columns, rows, "json", out)
    assert [json.loads(x) for x in out.getvalue().splitlines()] == [
        {"day": "2023-11-14", "n": 3, "note": None}, {"day": "2023-11-15", "n": 12,
                                                       "note": "a,b"}]
    out = io.StringIO()
    output.write(columns, rows, "table", out)
    assert out.getvalue().splitlines() == [
        "day          n  note", "----------  --  ----", "2023-11-14   3",
        "2023-11-15  12  a,b", "(2 rows)"]
