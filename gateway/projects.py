"""The gateway's view of the project registry, and the admission rules of SPEC §6.

``ProjectTable`` is a plain dict from every name and alias to a compiled project (networks
parsed, user-agent needles lower-cased, the secret as bytes), rebuilt per project when the
registry topic says it changed. ``admit`` is pure: it raises the ``NotAllowed`` error that
applies, in SPEC order (unknown project, then authentication, then exclusions).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any

from gateway.errors import Excluded, Unauthenticated, UnknownProject
from runtime import compacted
from schemas.identifiers import Identifiers
from schemas.project import ProjectRecord

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class CompiledProject:
    record: ProjectRecord
    secret: bytes | None
    networks: tuple[Network, ...]
    ua_needles: tuple[str, ...]
    visitors: frozenset[str]

    @classmethod
    def of(cls, record: ProjectRecord) -> CompiledProject:
        return cls(
            record=record,
            secret=record.secret.encode() if record.secret else None,
            networks=tuple(ipaddress.ip_network(n, strict=False) for n in record.exclude_ips),
            ua_needles=tuple(ua.lower() for ua in record.exclude_user_agents),
            visitors=frozenset(v.strip().lower() for v in record.exclude_visitors),
        )

    @property
    def name(self) -> str:
        return self.record.name


class ProjectTable:
    """Name or alias (lower-cased) → compiled project."""

    def __init__(self) -> None:
        self.loaded = False  # set once the registry topic has been read to its end
        self._projects: dict[str, CompiledProject] = {}
        self._lookup: dict[str, CompiledProject] = {}

    def apply(self, name: str, record: ProjectRecord | None) -> None:
        """Take one registry change: a new definition, or None for a removed project."""
        compacted.apply(self._projects, name,
                        None if record is None else CompiledProject.of(record))
        lookup: dict[str, CompiledProject] = {}
        for project in self._projects.values():  # aliases first: a real name always wins
            for alias in project.record.aliases:
                lookup.setdefault(alias, project)
        lookup.update(self._projects)
        self._lookup = lookup

    def mark_loaded(self) -> None:
        self.loaded = True

    def records(self) -> list[ProjectRecord]:
        return [project.record for project in self._projects.values()]

    def retain(self, names: set[str]) -> None:
        """Forget every project not in ``names`` (what a snapshot had but Kafka no longer has,
        e.g. removed while this gateway was down and its tombstone since compacted away)."""
        for name in [n for n in self._projects if n not in names]:
            self.apply(name, None)

    def find(self, name: str) -> CompiledProject | None:
        return self._lookup.get(name.strip().lower()) if name else None

    def __len__(self) -> int:
        return len(self._projects)


def admit(project: CompiledProject | None, params: dict[str, Any], ids: Identifiers, ip: str,
          user_agent: str, authorization: str) -> CompiledProject:
    """The project a request may be logged to, or the NotAllowed error that refuses it."""
    if project is None:
        raise UnknownProject()
    if project.secret is not None and not authenticated(project.secret, authorization):
        raise Unauthenticated()
    if project.networks and ip_excluded(project.networks, ip):
        raise Excluded()
    if project.ua_needles:
        agent = user_agent.lower()
        if any(needle in agent for needle in project.ua_needles):
            raise Excluded()
    if project.visitors:
        name = str(params.get("cv_name") or "").strip().lower()
        candidates = {ids.id and ids.id.lower(), ids.email, ids.cookie and ids.cookie.lower(),
                      name}
        if project.visitors & candidates:
            raise Excluded()
    return project


def authenticated(secret: bytes, authorization: str) -> bool:
    """HTTP Basic auth whose password is the project secret (the Java SDK's scheme)."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return False
    _, _, password = decoded.partition(b":")
    return hmac.compare_digest(password, secret)


def ip_excluded(networks: tuple[Network, ...], ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)
