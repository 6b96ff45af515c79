"""What the processors add to a request from its headers: browser, OS and device from its user
agent (``processors.useragents``), location from its address (``processors.locations``), and
what of the address is kept, by the project's own settings.

One ``Enrichment`` per worker process, built at start (the parser and the databases are
loaded once) and told of each project's settings as the worker follows the registry
(``project_changed``): ``--ip-anonymize`` zeroes the visitor's part of the address after the
lookup and before anything is logged or published; ``--no-location`` looks nothing up. A
record also says what its project asked when the gateway took it (``schemas.raw``), and the
more private of that and the registry holds.

The derived names (``schemas.action.DERIVED``) go under their own names, not prefixed. A request
that sends a name of a group itself (``schemas.action.GROUPS``: an app that knows its own
device type) replaces that group's derived values (``combine``), so a record never mixes the
sender's browser with a version read from the user agent of something else.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from processors.actions import Enriched
from processors.addresses import anonymize
from processors.locations import Locations
from processors.useragents import MAX_PARSED, UserAgents
from schemas.action import DERIVED, GROUPS

_DERIVED = frozenset(DERIVED)
CACHE_SIZE = 16_384  # (user agent, address) pairs remembered: about the visitors active at once


class Privacy(NamedTuple):
    """What a project's settings say about addresses (``schemas.project``)."""
    anonymize_ip: bool = False
    locate: bool = True


DEFAULT = Privacy()




def _given(value: Any) -> bool:
    return value is not None and value != ""


def combine(sent: Mapping[str, Any], derived: Mapping[str, Any]) -> dict[str, Any]:
    """The derived names of a record: ``derived``, except the groups of which the request
    sent a name, which are what it sent. ``device`` and ``device_type`` are one value (the
    SPEC's built-in ``device`` is the device type): either one sent stands for both. Without
    any sent, ``derived`` itself (shared: read it, never change it)."""
    if _DERIVED.isdisjoint(sent):
        return derived  # type: ignore[return-value]
    out: dict[str, Any] = {}
    for group in GROUPS:
        source = sent if any(_given(sent.get(name)) for name in group) else derived
        for name in group:
            value = source.get(name)
            if _given(value):
                out[name] = value
    kind = out.get("device_type", out.get("device"))
    if kind is not None:
        out.setdefault("device_type", kind)
        out.setdefault("device", kind)
    return {name: out[name] for name in DERIVED if name in out}


class Enrichment:
    """The user agents and locations of one process, and each project's privacy settings.
    ``Enrichment.none()`` derives nothing (the benchmark's comparison)."""

    def __init__(self, useragents: UserAgents | None, locations: Locations | None) -> None:
        self.useragents = useragents
        self.locations = locations
        self.privacy: dict[str, Privacy] = {}
        self._anonymize = functools.lru_cache(maxsize=CACHE_SIZE)(anonymize)
        # a visitor's requests repeat its user agent and address: one lookup for both
        self._derived = functools.lru_cache(maxsize=CACHE_SIZE)(self._derive)

    @classmethod
    def load(cls, city_database: Path | None = None) -> Enrichment:
        """The parser and the databases, loaded now (not on the first request)."""
        return cls(UserAgents(), Locations(city_database))

    @classmethod
    def none(cls) -> Enrichment:
        return cls(None, None)

    def project_changed(self, name: str, record: Any) -> None:
        """The registry's record of ``name`` (a ``ProjectRecord``; None: removed)."""
        if record is None:
            self.privacy.pop(name, None)
        else:
            self.privacy[name] = Privacy(record.ip_anonymize, record.location)

    def enrich(self, project: str, ip: str, user_agent: str, sent: Mapping[str, Any],
               anonymize_ip: bool = False, locate: bool = True) -> Enriched:
        """The derived names of a request (shared between requests: read them, never change
        them) and its address as it may be kept. ``anonymize_ip`` and ``locate``: what the
        request says its project asked when it was received (``schemas.raw``); the more
        private of that and the registry's record holds."""
        privacy = self.privacy.get(project, DEFAULT)
        locate = locate and privacy.locate
        fields = combine(sent, self._derived(user_agent[:MAX_PARSED], ip, locate))
        if anonymize_ip or privacy.anonymize_ip:
            return Enriched(fields, self._anonymize(ip), True)
        return Enriched(fields, ip)

    def _derive(self, user_agent: str, ip: str, locate: bool) -> dict[str, Any]:
        derived = (self.useragents.describe(user_agent) if self.useragents is not None
                   else {})
        if locate and self.locations is not None:
            place = self.locations.locate(ip)
            if place:
                return {**derived, **place}
        return derived  # type: ignore[return-value]

    def close(self) -> None:
        if self.locations is not None:
            self.locations.close()
