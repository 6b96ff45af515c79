"""Profiles: the merged record of one person, and the changes that travel to it.

A **profile** is a JSON object: ``project``, ``profile`` (its id), ``ids``, ``emails``,
``cookies``, ``properties`` (``{name: [value, event_ms]}``: the time says which write wins),
``first_seen_ms``, ``last_seen_ms``, ``actions``, ``visits``, ``merged_from``, ``merged_into``
and ``applied`` (replay watermarks, see ``processors.profiles``); and, once a request of it had
any, ``last_seen``: the derived names (browser, OS, device, location: ``schemas.action.DERIVED``)
of its latest request by event time, with that time as ``event_ms``. It is the value of the
compacted public ``profiles`` topic, which is also the changelog the profiles table recovers
from, so what is published is the whole state; ``shown`` is what `trackpipe profile` prints.

**Changes** travel on the internal ``profile-updates`` topic, in envelopes, keyed
``project \\n profile``: a ``ProfileUpdate`` (what the requests of one raw envelope said about
one profile, folded together), a ``MergeInto`` (this profile was merged into another) and a
``Fold`` (the state of a merged profile, for its survivor to take in). Pure.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from schemas.identity import scoped_key
from schemas.jsonline import to_json

Profile = dict[str, Any]


def new_profile(project: str, profile_id: str) -> Profile:
    return {"project": project, "profile": profile_id, "ids": [], "emails": [], "cookies": [],
            "properties": {}, "first_seen_ms": None, "last_seen_ms": None, "actions": 0,
            "visits": 0, "merged_from": [], "merged_into": None, "applied": {}}


def shown(profile: Profile) -> Profile:
    """The profile as `trackpipe profile` prints it: property values without their times,
    and without the replay watermarks."""
    out = {k: v for k, v in profile.items() if k != "applied"}
    out["properties"] = {k: v for k, (v, _) in profile["properties"].items()}
    return out


def encode(profile: Profile) -> bytes:
    """The stored and published form. Copied to its own size: orjson's output keeps a buffer
    of at least 4 KiB, which a table of a million profiles would keep too (measured: 4.6 KB a
    profile instead of 0.4)."""
    return bytes(memoryview(to_json(profile)))


def decode(data: bytes) -> Profile:
    return orjson.loads(data)


def _add(values: list[str], value: str | None) -> None:
    if value and value not in values:
        values.append(value)


class ProfileUpdate(msgspec.Struct, gc=False):
    """What the requests of one raw envelope said about one profile, folded together.

    ``origin`` is the raw ``[partition, offset]`` of that envelope, ``via`` the merged
    profiles that forwarded it (``>a>b``): the profile recognises a replay by them.
    """
    project: str
    profile: str
    origin: list[int] | None = None
    via: str = ""
    first_ms: int | None = None
    last_ms: int | None = None
    ids: list[str] = msgspec.field(default_factory=list)
    emails: list[str] = msgspec.field(default_factory=list)
    cookies: list[str] = msgspec.field(default_factory=list)
    properties: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    actions: int = 0
    visits: int = 0
    seen_ms: int | None = None
    seen: dict[str, Any] | None = None
    """The derived names of its latest request (by event time) that had any, and that time."""

    @property
    def key(self) -> bytes:
        return scoped_key(self.project, self.profile)

    def add(self, event_ms: int, *, id: str | None = None, email: str | None = None,
            cookie: str | None = None, properties: dict[str, Any] | None = None,
            actions: int = 0, visits: int = 0, seen: dict[str, Any] | None = None) -> None:
        """Fold one request in: identifiers in order, the latest value of each property by
        event time (ties: the later request), counts summed, the latest derived names."""
        self.first_ms = event_ms if self.first_ms is None else min(self.first_ms, event_ms)
        self.last_ms = event_ms if self.last_ms is None else max(self.last_ms, event_ms)
        _add(self.ids, id)
        _add(self.emails, email)
        _add(self.cookies, cookie)
        for name, value in (properties or {}).items():
            known = self.properties.get(name)
            if known is None or event_ms >= known[1]:
                self.properties[name] = [value, event_ms]
        self.actions += actions
        self.visits += visits
        if seen and (self.seen_ms is None or event_ms >= self.seen_ms):
            self.seen_ms, self.seen = event_ms, seen

    def to_obj(self) -> list[Any]:
        obj = ["update", self.project, self.profile, self.origin, self.via, self.first_ms,
               self.last_ms, self.ids, self.emails, self.cookies, self.properties,
               self.actions, self.visits]
        return obj if self.seen is None else [*obj, self.seen_ms, self.seen]  # added last


class MergeInto(msgspec.Struct, frozen=True, gc=False):
    """``profile`` was merged into ``into``: it sends its state there and forwards from now."""
    project: str
    profile: str
    into: str

    @property
    def key(self) -> bytes:
        return scoped_key(self.project, self.profile)

    def to_obj(self) -> list[Any]:
        return ["merge", self.project, self.profile, self.into]


class Fold(msgspec.Struct, frozen=True, gc=False):
    """The state of ``source`` (merged into ``profile``), for ``profile`` to take in.

    ``via`` names the merged profiles that forwarded it (``>b``), when ``profile`` had itself
    been merged before the fold reached it; the fold's watermarks take that path."""
    project: str
    profile: str
    source: Profile
    via: str = ""

    @property
    def key(self) -> bytes:
        return scoped_key(self.project, self.profile)

    def to_obj(self) -> list[Any]:
        obj = ["fold", self.project, self.profile, self.source]
        return [*obj, self.via] if self.via else obj  # as written before forwarding existed


ProfileChange = ProfileUpdate | MergeInto | Fold


def change_from_obj(obj: list[Any]) -> ProfileChange:
    kind, *fields = obj
    if kind == "update":
        return ProfileUpdate(*fields)
    if kind == "merge":
        return MergeInto(*fields)
    if kind == "fold":
        return Fold(*fields)
    raise ValueError(f"unknown profile change {kind!r}")
