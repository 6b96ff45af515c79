"""An action record: what the processors make of one request, as the public ``actions``
topic carries it (updates too) and as every day-log line holds it (``logstore.lines``).

JSON, its members in this order; the derived names (``DERIVED``: browser, OS, device, location)
only where known, and ``updates``/``orphan`` only on updates (the action an update changes, or
that it names none the visitor sent). The SQL views' columns follow from this type
(``logstore.sql``). Pure.

``DERIVED`` are the built-in names the processors fill in from the request's user agent and
address (``processors.enrichment``), in ``GROUPS``: a request that sends a name of a group
itself replaces that group's derived values (an app knows its own device type better than its
user agent says). The README's "Derived names" table says which comes from what.
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
    browser: NotRequired[str]            # the user agent's family: "Chrome Mobile", "Firefox"
    browser_version: NotRequired[str]    # the browser's major version: "126"
    os: NotRequired[str]                 # "Android", "Windows", "iOS"
    os_version: NotRequired[str]         # "14", "17.5"
    device_type: NotRequired[str]        # desktop, mobile, tablet or bot
    device: NotRequired[str]             # the same as device_type (its name in earlier lines)
    device_brand: NotRequired[str]       # "Samsung", "Apple"
    device_model: NotRequired[str]       # "SM-S911B", "iPhone"
    country: NotRequired[str]            # ISO 3166-1 alpha-2: "DE"
    country_name: NotRequired[str]       # "Germany"
    region: NotRequired[str]             # with a city database only
    city: NotRequired[str]               # with a city database only
    builtins: dict[str, Any]
    meta: dict[str, Any]
    updates: NotRequired[str | None]
    orphan: NotRequired[bool]


# The derived names, by what a request sending one of them replaces (``processors.enrichment``).
GROUPS: tuple[tuple[str, ...], ...] = (
    ("browser", "browser_version"),
    ("os", "os_version"),
    ("device_type", "device", "device_brand", "device_model"),
    ("country", "country_name", "region", "city"),
)
DERIVED: tuple[str, ...] = tuple(name for group in GROUPS for name in group)
