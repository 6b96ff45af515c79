"""How the read commands print rows: an aligned table for people, CSV or JSON lines for tools.

What senders wrote reaches an operator's terminal through here, so no value may steer it: C0
and C1 controls (escape sequences, carriage returns, backspaces), bidirectional overrides
(which reorder what follows them on screen), line separators and lone surrogates (which UTF-8
cannot print) are shown escaped, ``\\x1b`` or ``\\u202e`` in a table or CSV cell, ``\\u001b``
in JSON. Rows arrive in chunks and CSV and JSON lines are written as they come; a table keeps
its cells cut to ``MAX_WIDTH``, never a whole value.

Times have two forms: for people (tables, CSV) the local time with its offset, to the
millisecond (``when``: ``2026-12-02 11:04:05.123+01:00``); in JSON, epoch milliseconds, as the
day logs hold them. The dashboard's page writes the people's form the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

MAX_WIDTH = 60  # a table's widest column; longer values are cut with …

# Cc (C0, DEL, C1); the bidirectional formatting characters (ALM, LRM, RLM, the embeddings
# and overrides, the isolates); the line and paragraph separators; surrogates.
_UNSEEN = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f{_UNSEEN}]")
_UNSAFE_IN_JSON = re.compile(f"[{_UNSEEN}]")  # json.dumps escapes C0 itself
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    """``text`` with every character that could steer a terminal escaped."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON (UTF-8 kept readable), the characters ``visible`` escapes as
    ``\\uXXXX``: still the same JSON to a parser."""
    text = json.dumps(value, ensure_ascii=False, indent=indent, default=_plain)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write(columns: Sequence[str], chunks: Iterable[Sequence[Sequence[Any]]], fmt: str,
          out: TextIO = sys.stdout, noun: str = "row") -> None:
    """Print ``chunks`` of rows (each a list of rows) as ``fmt``: table, csv or json."""
    if fmt == "json":
        for rows in chunks:
            out.writelines(json_text(dict(zip(columns, row, strict=True))) + "\n"
                           for row in rows)
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([visible(c) for c in columns])
        for rows in chunks:
            writer.writerows([_cell(v) for v in row] for row in rows)
    else:
        _table(columns, chunks, out, noun)


def _table(columns: Sequence[str], chunks: Iterable[Sequence[Sequence[Any]]], out: TextIO,
           noun: str) -> None:
    heads = [visible(c) for c in columns]
    cells: list[list[str]] = []
    numeric = [True] * len(columns)
    for rows in chunks:
        for row in rows:
            cells.append([_clip(_cell(v), MAX_WIDTH) for v in row])
            numeric = [n and (isinstance(v, int | float) or v is None)
                       for n, v in zip(numeric, row, strict=True)]
    numeric = [n and bool(cells) for n in numeric]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]
    widths = [min(MAX_WIDTH, w) for w in widths]

    def aligned(texts: Sequence[str]) -> str:
        return "  ".join(t.rjust(w) if right else _clip(t, w).ljust(w)
                         for t, w, right in zip(texts, widths, numeric, strict=True)
                         ).rstrip() + "\n"

    out.write(aligned(heads))
    out.write("  ".join("-" * w for w in widths) + "\n")
    out.writelines(aligned(row) for row in cells)
    out.write(f"({len(cells)} {noun}{'s' if len(cells) != 1 else ''})\n")


def when(moment: int | dt.datetime) -> str:
    """A time for people: epoch ms, or a datetime (a naive one is UTC, as the SQL views give
    them), as the local time with its offset. A time past what the calendar holds is shown as
    it came."""
    try:
        if isinstance(moment, dt.datetime):
            aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        else:
            aware = dt.datetime.fromtimestamp(moment / 1000, dt.UTC)
        return aware.astimezone().isoformat(sep=" ", timespec="milliseconds")
    except (OverflowError, ValueError, OSError):  # the years 1 and 9999, moved by an offset
        return str(moment)


def epoch_ms(moment: dt.datetime) -> int:
    """A datetime (naive: UTC) as epoch milliseconds, what JSON says of a time."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return (aware - _EPOCH) // dt.timedelta(milliseconds=1)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return epoch_ms(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return visible(when(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    return visible(str(value))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
