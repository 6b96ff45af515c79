"""From a raw record's parameters to the records the processors emit. Pure.

An update (``/track/update``) names the action it changes by the client id ``idptnc``; the
visitor keeps its recent ones (``remember_action``), so the update record says which event it
updates, or that it is an orphan (kept, never an error).

``split`` sorts the parameters by prefix (SPEC §2): ``ce_`` action, ``cv_`` visitor, ``cs_``
visit, ``co_`` organisation properties (prefix stripped), the built-ins, and everything else
kept as request metadata — never dropped. ``build_record`` assembles the enriched record that
goes to the actions topic and the day log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.campaigns import parse_campaign
from processors.timestamps import EventTime
from processors.useragent import classify

BUILTINS = frozenset({
    "event", "timestamp", "timeout", "cookie", "ip", "referer", "referrer", "browser", "os",
    "device", "screen", "language", "app", "response", "passive", "close", "idptnc",
    "duration", "org", "instance", "meta", "context", "project", "Project", "host", "domain",
    "website", "alias", "id", "email",
})
PREFIXES = {"ce_": "action", "cv_": "visitor", "cs_": "visit", "co_": "org"}


@dataclass(slots=True)
class Parts:
    action: dict[str, Any] = field(default_factory=dict)
    visitor: dict[str, Any] = field(default_factory=dict)
    visit: dict[str, Any] = field(default_factory=dict)
    org: dict[str, Any] = field(default_factory=dict)
    builtins: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def split(params: Mapping[str, Any]) -> Parts:
    parts = Parts()
    for name, value in params.items():
        kind = PREFIXES.get(name[:3])
        if kind is not None and len(name) > 3:
            getattr(parts, kind)[name[3:]] = value
        elif name in BUILTINS:
            parts.builtins[name] = value
        else:
            parts.meta[name] = value
    if "id" in parts.org:  # co_id is the built-in org
        parts.builtins.setdefault("org", parts.org["id"])
    return parts


def event_name(parts: Parts) -> str:
    """``event``, else the legacy ``ce_name``; a request that names none is 'unnamed'."""
    name = parts.builtins.get("event") or parts.action.get("name")
    return str(name) if name else "unnamed"


RECENT_ACTIONS = 32


def remember_action(recent: dict[str, str], idptnc: object, event_id: str) -> dict[str, str]:
    """The visitor's recent client action ids (``idptnc``) → event ids, newest last, bounded:
    an update refers to an action of the current page, so a short memory is enough."""
    if not idptnc:
        return recent
    kept = {k: v for k, v in recent.items() if k != str(idptnc)}
    kept[str(idptnc)] = event_id
    return dict(list(kept.items())[-RECENT_ACTIONS:])


@dataclass(frozen=True, slots=True)
class Context:
    """What the processor decided about a raw record before building its output."""
    event_id: str
    project: str
    endpoint: str
    received_ms: int
    ip: str
    user_agent: str
    profile: str
    visitor_key: str
    cookie_assigned: bool
    visit_id: str | None
    time: EventTime
    updates: str | None = None
    """For an update: the event id of the action it updates (None: an orphan update)."""
    over_quota: bool = False
    """The gateway found the project over its monthly quota: logged, triggers must not run."""
    visit_properties: Mapping[str, Any] | None = None
    """The visit's ``cs_*`` properties so far (this request's included); None: this request's."""


def build_record(ctx: Context, parts: Parts, referer: str = "",
                 language: str = "") -> dict[str, Any]:
    name = event_name(parts) if ctx.endpoint == "ce" else ctx.endpoint
    properties = dict(parts.action)
    if ctx.endpoint == "ce":
        properties.update(parse_campaign(name, properties))
    device = {k: parts.builtins[k] for k in ("browser", "os", "device") if parts.builtins.get(k)}
    for key, value in classify(ctx.user_agent).items():
        device.setdefault(key, value)
    builtins = {k: v for k, v in parts.builtins.items() if k not in ("browser", "os", "device")}
    builtins.setdefault("referer", builtins.pop("referrer", None) or referer or None)
    builtins.setdefault("language", language or None)
    return {
        "id": ctx.event_id, "project": ctx.project, "type": ctx.endpoint, "event": name,
        "profile": ctx.profile, "visitor_key": ctx.visitor_key, "visit": ctx.visit_id,
        "event_ms": ctx.time.ms, "clock": str(ctx.time.clock), "future": ctx.time.future,
        "received_ms": ctx.received_ms, "ip": ctx.ip, "user_agent": ctx.user_agent,
        "cookie_assigned": ctx.cookie_assigned, "over_quota": ctx.over_quota,
        "properties": properties,
        "visitor_properties": parts.visitor,
        "visit_properties": dict(parts.visit if ctx.visit_properties is None
                                 else ctx.visit_properties),
        "org_properties": parts.org, **device,
        "builtins": {k: v for k, v in builtins.items() if v is not None}, "meta": parts.meta,
        **({"updates": ctx.updates, "orphan": ctx.updates is None}
           if ctx.endpoint == "update" else {}),
    }
