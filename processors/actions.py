"""From a raw record's parameters to the records the processors emit. Pure.

An update (``/track/update``) names the action it changes by the client id ``idptnc``; the
visitor keeps its recent ones (``remember_action``), so the update record says which event it
updates, or that it is an orphan (kept, never an error).

``split`` sorts the parameters by prefix (SPEC §2): ``ce_`` action, ``cv_`` visitor, ``cs_``
visit, ``co_`` organisation properties (prefix stripped), the built-ins, and everything else
kept as request metadata — never dropped. ``build_record`` assembles the action record
(``schemas.action``) that goes to the actions topic and the day log, with what
``processors.enrichment`` derived (decided before: it reads databases).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from processors.addresses import anonymize
from processors.campaigns import parse_campaign
from processors.timestamps import EventTime
from processors.visits import Visit
from schemas.action import DERIVED, ActionRecord
from schemas.endpoints import Endpoint
from schemas.raw import RawRecord

BUILTINS = frozenset({
    "event", "timestamp", "timeout", "cookie", "ip", "referer", "referrer", "browser", "os",
    "device", "screen", "language", "app", "response", "passive", "close", "idptnc",
    "duration", "org", "instance", "meta", "context", "project", "Project", "host", "domain",
    "website", "alias", "id", "email", *DERIVED,
})


class Parts(msgspec.Struct, gc=False):
    action: dict[str, Any] = msgspec.field(default_factory=dict)
    visitor: dict[str, Any] = msgspec.field(default_factory=dict)
    visit: dict[str, Any] = msgspec.field(default_factory=dict)
    org: dict[str, Any] = msgspec.field(default_factory=dict)
    builtins: dict[str, Any] = msgspec.field(default_factory=dict)
    meta: dict[str, Any] = msgspec.field(default_factory=dict)


def split(params: Mapping[str, Any]) -> Parts:
    action: dict[str, Any] = {}
    visitor: dict[str, Any] = {}
    visit: dict[str, Any] = {}
    org: dict[str, Any] = {}
    builtins: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    by_prefix = {"ce_": action, "cv_": visitor, "cs_": visit, "co_": org}
    for name, value in params.items():
        scope = by_prefix.get(name[:3])
        if scope is not None and len(name) > 3:
            scope[name[3:]] = value
        elif name in BUILTINS:
            builtins[name] = value
        else:
            meta[name] = value
    if "id" in org:  # co_id is the built-in org
        builtins.setdefault("org", org["id"])
    return Parts(action, visitor, visit, org, builtins, meta)


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


class Enriched(NamedTuple):
    """What ``processors.enrichment`` derived for a request before its action is built."""
    fields: dict[str, Any]     # the derived names (``schemas.action.DERIVED``), in that order
    ip: str                    # the address as it may be kept
    anonymized: bool = False   # the project keeps no full address (nor a sent ``ip``)


_DERIVED = frozenset(DERIVED)


class Decided(msgspec.Struct, frozen=True, gc=False):
    """What the visitors stage decided about a request before its action is built."""
    profile: str
    visitor_key: str
    time: EventTime
    visit: Visit | None  # the visit it is part of (after it)
    updates: str | None = None
    """For an update: the event id of the action it updates (None: an orphan update)."""


def build_record(raw: RawRecord, decided: Decided, parts: Parts, enriched: Enriched
                 ) -> ActionRecord:
    """The action record of a request (``schemas.action``): its name, its properties with the
    campaign, the derived names (``enriched``: from its user agent and address unless the
    request says), its visit's properties so far, the referer and language from the headers
    unless sent. The address is kept as ``enriched`` says (anonymized, a sent ``ip`` too)."""
    endpoint = raw.endpoint
    name = event_name(parts) if endpoint == Endpoint.CE else endpoint
    properties = parts.action
    if endpoint == Endpoint.CE:
        campaign = parse_campaign(name, properties, parts.meta)
        if campaign:
            properties = {**properties, **campaign}
    sent = parts.builtins
    builtins = {}
    for key, value in sent.items():
        if value is not None and key != "referrer" and key not in _DERIVED:
            builtins[key] = value
    if enriched.anonymized and "ip" in builtins:
        builtins["ip"] = anonymize(str(builtins["ip"]))
    if "referer" not in builtins:
        found = sent.get("referrer") or raw.referer
        if found:
            builtins["referer"] = found
    if "language" not in builtins and raw.language:
        builtins["language"] = raw.language
    visit, time = decided.visit, decided.time
    record: ActionRecord = {
        "id": raw.id, "project": raw.project, "type": endpoint, "event": name,
        "profile": decided.profile, "visitor_key": decided.visitor_key,
        "visit": visit.id if visit else None,
        "event_ms": time.ms, "clock": time.clock.value, "future": time.future,
        "received_ms": raw.received_ms, "ip": enriched.ip, "user_agent": raw.user_agent,
        "cookie_assigned": not raw.visitor_key, "over_quota": raw.over_quota,
        "properties": properties,
        "visitor_properties": parts.visitor,
        "visit_properties": visit.properties if visit else parts.visit,
        "org_properties": parts.org, **enriched.fields,  # type: ignore[typeddict-item]
        "builtins": builtins, "meta": parts.meta,
    }
    if endpoint == Endpoint.UPDATE:
        record["updates"], record["orphan"] = decided.updates, decided.updates is None
    return record
