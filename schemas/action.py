"""An action record: what the processors make of one request, as the public ``actions``
topic carries it (updates too) and as every day-log line holds it (``logstore.lines``).

JSON, its members in this order; ``browser``, ``os`` and ``device`` only where known, and
``updates``/``orphan`` only on updates (the action an update changes, or that it names none
the visitor sent). The SQL views' columns follow from this type (``logstore.sql``). Pure.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class ActionRecord(TypedDict):
    id: str                       # the event id (UUIDv7; a push line's ends in .<n>)
    project: str
    type: str                     # the endpoint: ce, identify, update, ping
    event: str                    # the action's name (ce), else the endpoint
    profile: str                  # the profile it was logged under
    visitor_key: str
    visit: str | None
    event_ms: int
    clock: str                    # which clock event_ms is from (processors.timestamps)
    future: bool
    received_ms: int
    ip: str
    user_agent: str
    cookie_assigned: bool
    over_quota: bool
    properties: dict[str, Any]           # ce_*, and the campaign's
    visitor_properties: dict[str, Any]   # cv_*
    visit_properties: dict[str, Any]     # cs_*, the visit's so far
    org_properties: dict[str, Any]       # co_*
    browser: NotRequired[str]
    os: NotRequired[str]
    device: NotRequired[str]
    builtins: dict[str, Any]
    meta: dict[str, Any]
    updates: NotRequired[str | None]
    orphan: NotRequired[bool]
