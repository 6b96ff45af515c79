"""Query strings to (name, value) pairs: ``urllib.parse.parse_qsl(qs, keep_blank_values,
errors="replace")``, pair for pair, only faster.

A worker parses every request's query and its page URL's, and ``parse_qsl`` was a quarter of a
record's own cost: it coerces and regex-scans every name and value. Here a field with neither
``%`` nor ``+`` is split as it is, and an ASCII field is percent-decoded with the same table
the standard library's ``unquote_to_bytes`` uses, then decoded as UTF-8 with replacement,
which is what ``unquote`` does to an ASCII run; a field with other characters goes to
``unquote`` itself. Pure.
"""

from __future__ import annotations

from urllib.parse import unquote

_HEXDIG = "0123456789ABCDEFabcdef"
_HEX = {a + b: bytes.fromhex(a + b) for a in _HEXDIG for b in _HEXDIG}


def _unquote(text: str) -> str:
    if "%" not in text:
        return text
    if not text.isascii():
        return unquote(text, errors="replace")
    bits = text.split("%")
    decoded = [bits[0].encode()]
    for item in bits[1:]:
        byte = _HEX.get(item[:2])
        if byte is None:
            decoded.append(b"%" + item.encode())
        else:
            decoded.append(byte + item[2:].encode())
    return b"".join(decoded).decode("utf-8", "replace")


def parse_query(qs: str, keep_blank_values: bool = False) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for field in qs.split("&"):
        if not field:
            continue
        name, equals, value = field.partition("=")
        if not equals and not keep_blank_values:
            continue
        if not value and not keep_blank_values:
            continue
        if "+" in field:
            name, value = name.replace("+", " "), value.replace("+", " ")
        if "%" in field:
            name, value = _unquote(name), _unquote(value)
        pairs.append((name, value))
    return pairs
