"""A registered project: the record of the compacted projects topic.

``ProjectRecord.build`` is the one place that validates what a user typed (CLI or TOML), so a
bad name, alias or CIDR is refused before anything is written. Names are data that later become
folder names: only ``[a-z0-9._-]`` is allowed, starting with a letter or digit, which no path
trick (``..``, ``/``, a NUL) can get through.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import asdict, dataclass, field

import msgpack

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
SCHEMA_VERSION = 1


class ProjectError(ValueError):
    """A project definition that cannot be registered; the message says which part and why."""


def new_webhook_secret() -> str:
    """A fresh secret for signing a project's webhooks."""
    return secrets.token_urlsafe(32)


def check_name(name: str, what: str = "project name") -> str:
    """The canonical (lower-case) form of ``name``, or ProjectError."""
    canonical = name.strip().lower()
    if not NAME_RE.fullmatch(canonical) or ".." in canonical:
        raise ProjectError(
            f"invalid {what} {name!r}: use 1-128 of a-z 0-9 . _ - , starting with a letter or "
            "digit, no '..'")
    return canonical


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    name: str
    aliases: tuple[str, ...] = ()
    secret: str | None = field(default=None, repr=False)
    exclude_ips: tuple[str, ...] = ()
    exclude_user_agents: tuple[str, ...] = ()
    exclude_visitors: tuple[str, ...] = ()
    quota: int | None = None
    retention_days: int = 365
    webhook_secret: str | None = field(default=None, repr=False)
    """Signs the project's webhooks (not ``secret``, which every server-side SDK holds)."""
    ip_anonymize: bool = False
    """Keep no full address: the processors zero its last octet (IPv4) or last 80 bits (IPv6)
    after the location lookup, before anything is logged or published."""
    location: bool = True
    """Look the address up for a location (country, and city with a city database)."""

    @classmethod
    def build(cls, name: str, *, aliases: tuple[str, ...] = (), secret: str | None = None,
              exclude_ips: tuple[str, ...] = (), exclude_user_agents: tuple[str, ...] = (),
              exclude_visitors: tuple[str, ...] = (), quota: int | None = None,
              retention_days: int = 365, webhook_secret: str | None = None,
              ip_anonymize: bool = False, location: bool = True) -> ProjectRecord:
        canonical = check_name(name)
        alias_names = tuple(dict.fromkeys(check_name(a, "alias") for a in aliases))
        if canonical in alias_names:
            raise ProjectError(f"alias {canonical!r} is the project's own name")
        for ip in exclude_ips:
            try:
                ipaddress.ip_network(ip, strict=False)
            except ValueError:
                raise ProjectError(f"invalid IP or CIDR exclusion {ip!r}") from None
        if any(not ua.strip() for ua in exclude_user_agents):
            raise ProjectError("a user-agent exclusion must not be empty")
        if any(not v.strip() for v in exclude_visitors):
            raise ProjectError("a visitor exclusion must not be empty")
        if secret is not None and not secret:
            raise ProjectError("the secret must not be empty (omit it to turn secure tracking off)")
        if quota is not None and quota < 0:
            raise ProjectError("quota must be zero or more actions a month")
        if retention_days <= 0:
            raise ProjectError("retention must be at least one day")
        if webhook_secret is not None and len(webhook_secret) < 16:
            raise ProjectError("the webhook signing secret must be at least 16 characters")
        if not isinstance(ip_anonymize, bool) or not isinstance(location, bool):
            raise ProjectError("ip_anonymize and location are true or false")
        return cls(canonical, alias_names, secret, tuple(exclude_ips),
                   tuple(exclude_user_agents), tuple(exclude_visitors), quota, retention_days,
                   webhook_secret, ip_anonymize, location)

    def to_bytes(self) -> bytes:
        return msgpack.packb({"v": SCHEMA_VERSION, **asdict(self)})

    @classmethod
    def from_bytes(cls, data: bytes) -> ProjectRecord:
        obj = msgpack.unpackb(data)
        obj.pop("v", None)
        for key in ("aliases", "exclude_ips", "exclude_user_agents", "exclude_visitors"):
            obj[key] = tuple(obj.get(key) or ())
        return cls(**{k: v for k, v in obj.items() if k in cls.__dataclass_fields__})

    def public_dict(self) -> dict[str, object]:
        """What `projects show` prints: everything but the secret itself."""
        shown = asdict(self)
        shown["secret"] = "<set>" if self.secret else None
        shown["webhook_secret"] = "<set>" if self.webhook_secret else None
        return shown
