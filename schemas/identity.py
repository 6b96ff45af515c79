"""The records of identity resolution that cross Kafka: links, rebinds and merges.

A visitor partition that sees an identifier its device was not yet linked to sends a ``Link``
to the partition that owns the identifier (keyed ``project \\n identifier``); that partition
answers with a ``Rebind`` to the visitor's partition (keyed like the visitor's raw records) and
records every ``Merge`` on the public ``merges`` topic. ``processors.identity`` decides; this
module only says what travels. Links and rebinds are internal (items of envelopes, msgpack);
merges are public (one JSON message each). Pure.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson


def scoped_key(project: str, name: str) -> bytes:
    """The Kafka and table key of anything of one project: ``project \\n name``."""
    return f"{project}\n{name}".encode()


class Link(msgspec.Struct, frozen=True, gc=False):
    """Ask the identifier's partition who owns it, offering ``candidate``."""
    identifier: str          # "id:u" or "email:e"
    candidate: str           # the profile the asking visitor belongs to now
    visitor_key: str
    has_id: bool = False     # the candidate profile has an id (for email links)
    project: str = ""
    at_ms: int = 0           # event time of the request that made it (the merge's time)

    @property
    def key(self) -> bytes:
        return scoped_key(self.project, self.identifier)

    def to_obj(self) -> list[Any]:
        return [self.identifier, self.candidate, self.visitor_key, self.has_id, self.project,
                self.at_ms]

    @classmethod
    def from_obj(cls, obj: list[Any]) -> Link:
        return cls(*obj)


class Rebind(msgspec.Struct, frozen=True, gc=False):
    """The identifier's owner answered ``link``: the visitor belongs to ``answer``."""
    link: Link
    answer: str

    @property
    def key(self) -> bytes:
        return scoped_key(self.link.project, self.link.visitor_key)

    def to_obj(self) -> list[Any]:
        return [self.link.to_obj(), self.answer]

    @classmethod
    def from_obj(cls, obj: list[Any]) -> Rebind:
        return cls(Link.from_obj(obj[0]), obj[1])


class Merge(msgspec.Struct, frozen=True, gc=False):
    """Two profiles became one: ``source`` is folded into ``into`` because of ``identifier``."""
    source: str
    into: str
    identifier: str
    project: str = ""
    visitor_key: str = ""    # the visitor whose link caused it
    at_ms: int = 0

    @property
    def key(self) -> bytes:
        return scoped_key(self.project, self.source)

    def to_json(self) -> bytes:
        return orjson.dumps({"project": self.project, "at_ms": self.at_ms,
                             "visitor_key": self.visitor_key, "source": self.source,
                             "into": self.into, "identifier": self.identifier})

    @classmethod
    def from_json(cls, data: bytes) -> Merge:
        obj = orjson.loads(data)
        return cls(obj["source"], obj["into"], obj["identifier"], obj["project"],
                   obj["visitor_key"], obj["at_ms"])
