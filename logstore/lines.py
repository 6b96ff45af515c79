"""What a day-log line is: an action record (``schemas.action``) and where its raw record was.

On disk a line is the action's JSON object with one more member, ``_source``: the raw
partition, the offset of its envelope and its index in it (its last member, so that a reader
finds it without parsing the line, ``logstore.timeline.source_of``). ``encode`` is the one
place that assembles it, from the JSON the actions topic gets, without encoding it again.

Between the visitors stage, the journal and the day-log writer a line travels as a
``LogLine``: the line's bytes and where they go, and what the timeline index takes from it.
Both are tuples, so the journal holds them as msgpack arrays, as it did before they had names.
"""

from __future__ import annotations

import types
import typing
from typing import Any, NamedTuple

from schemas.action import ActionRecord


class Indexed(NamedTuple):
    """What the timeline index takes from a line."""
    profile: str
    event_ms: int
    kind: str               # the endpoint (pings are not indexed as events)
    names: list[str]        # the identifiers it carried (``kind:value``) and its visitor key


class LogLine(NamedTuple):
    project: str
    day: str                # its receipt day: the folder it goes to
    index: int              # in its envelope
    data: bytes             # the line, ending in a newline
    event_day: str | None   # its event day, for the event-day index
    indexed: Indexed | None = None  # None in journal entries written before the index

    @classmethod
    def from_obj(cls, obj: list[Any]) -> LogLine:
        """From the journal's msgpack array."""
        line = cls(*obj)
        return line if line.indexed is None else line._replace(indexed=Indexed(*line.indexed))


def encode(action_json: bytes, partition: int, offset: int, index: int) -> bytes:
    """The day-log line of an action: its JSON object with ``_source`` added, and a newline."""
    return action_json[:-1] + (b',"_source":{"partition":%d,"offset":%d,"index":%d}}\n'
                               % (partition, offset, index))


_SQL_TYPES = {str: "VARCHAR", int: "BIGINT", bool: "BOOLEAN", dict: "JSON"}


def _sql_type(hint: Any) -> str:
    while typing.get_origin(hint) is typing.NotRequired:
        hint = typing.get_args(hint)[0]
    if isinstance(hint, types.UnionType):  # X | None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return _SQL_TYPES[typing.get_origin(hint) or hint]


# A line's members and their SQL types, as DuckDB reads the day logs.
COLUMNS: dict[str, str] = {name: _sql_type(hint) for name, hint in
                           typing.get_type_hints(ActionRecord, include_extras=True).items()}
