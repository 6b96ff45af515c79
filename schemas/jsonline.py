"""The one JSON encoder of the records in ``schemas`` that travel as JSON: visits, profiles
(the profiles topic and table), merges, dead letters.

JSON encoding is the largest share of a record's own cost after parsing, so it is orjson
(compact, UTF-8, about five times the standard library). What orjson refuses (integers beyond
64 bits, keys that are not strings, lone surrogates) goes to the standard library with the
same compact form, so nothing a sender can put in a request is handled differently because
of the encoder.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def to_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
