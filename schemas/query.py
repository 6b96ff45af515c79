"""Query strings to (name, value) pairs: ``urllib.parse.parse_qsl(qs, keep_blank_values,
errors="replace")``, pair for pair, only faster.

A worker parses every request's query and its page URL's; ``parse_qsl`` calls ``unquote`` on
every name and value, which made parsing a quarter of a record's own cost. A field with
neither ``%`` nor ``+`` needs no decoding and is split as it is; any other field is handed to
``parse_qsl`` itself, so decoding rules are the standard library's.
"""

from __future__ import annotations

from urllib.parse import parse_qsl


def parse_query(qs: str, keep_blank_values: bool = False) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for field in qs.split("&"):
        if not field:
            continue
        if "%" in field or "+" in field:
            pairs += parse_qsl(field, keep_blank_values=keep_blank_values, errors="replace")
            continue
        name, _, value = field.partition("=")
        if value or keep_blank_values:
            pairs.append((name, value))
    return pairs
