"""How the read commands print rows: an aligned table for people, CSV or JSON lines for tools."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

MAX_WIDTH = 60  # a table's widest column; longer values are cut with …


def write(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str,
          out: TextIO = sys.stdout, noun: str = "row") -> None:
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, row, strict=True)), default=_plain,
                                 ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
    else:
        cells = [[_cell(v) for v in row] for row in rows]
        widths = [min(MAX_WIDTH, max([len(c)] + [len(r[i]) for r in cells]))
                  for i, c in enumerate(columns)]
        numeric = [bool(rows) and all(isinstance(r[i], int | float) or r[i] is None
                                      for r in rows) for i in range(len(columns))]

        def aligned(texts: Sequence[str]) -> str:
            return "  ".join(t.rjust(w) if right else _clip(t, w).ljust(w)
                             for t, w, right in zip(texts, widths, numeric, strict=True)
                             ).rstrip() + "\n"

        out.write(aligned(columns))
        out.write("  ".join("-" * w for w in widths) + "\n")
        out.writelines(aligned(row) for row in cells)
        out.write(f"({len(rows)} {noun}{'s' if len(rows) != 1 else ''})\n")


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
