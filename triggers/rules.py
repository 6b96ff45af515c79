"""Which rules an action fires, and the small decisions around a firing. Pure.

A rule fires for an action of its event whose conditions all hold. Properties are looked up by
the sender's prefix: ``ce_`` in the action's properties, ``cs_`` in the visit's, ``cv_`` in the
visitor's: the profile's known properties overlaid by the ones this very request sent (the
newest); a derived name (``country``, ``device_type``…) in the action itself. Comparisons are
on text, except ``>`` and ``<``, which compare numbers and are false for a property that is not
one; ``contains`` ignores case; ``exists`` means present and not
empty. Over-quota actions and updates never fire (SPEC §6).

Webhooks are signed with the project's own signing secret over the time and the body, never
sent unsigned, and reach only public addresses unless the operator allows a network
(``webhook_address_allowed``, checked on the resolved address at delivery: a name that later
resolves elsewhere is checked again; an IPv4 address inside an IPv6 one is judged itself).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.endpoints import Endpoint
from schemas.trigger import Condition, TriggerRule

MAX_DELAY_S = 300.0
SIGNATURE_TOLERANCE_S = 300  # what receivers are told to accept (README)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def holds(condition: Condition, value: Any) -> bool:
    present = value is not None and value != ""
    if condition.op == "exists":
        return present
    if not present:
        return condition.op == "!="
    text = value if isinstance(value, str) else str(value)
    wanted = condition.value or ""
    if condition.op == "=":
        return text == wanted
    if condition.op == "!=":
        return text != wanted
    if condition.op == "contains":
        return wanted.casefold() in text.casefold()
    number, limit = _number(value), _number(wanted)
    if number is None or limit is None:
        return False
    return number > limit if condition.op == ">" else number < limit


def scopes(action: Mapping[str, Any],
           profile: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    visitor = dict((profile or {}).get("properties") or {})
    visitor.update(action.get("visitor_properties") or {})
    return {"action": action.get("properties") or {}, "visitor": visitor,
            "visit": action.get("visit_properties") or {}, "derived": action}


def can_fire(action: Mapping[str, Any]) -> bool:
    return action.get("type") == Endpoint.CE and not action.get("over_quota")


def matching(rules: Iterable[TriggerRule], action: Mapping[str, Any],
             profile: Mapping[str, Any] | None) -> list[TriggerRule]:
    """The rules ``action`` fires, in name order."""
    if not can_fire(action):
        return []
    found = scopes(action, profile)
    return sorted((rule for rule in rules if rule.event == action.get("event") and all(
        holds(c, found[c.scope].get(c.name)) for c in rule.conditions)), key=lambda r: r.name)


def firing_id(event_id: str, rule_name: str) -> str:
    """One firing per action and rule: the dedupe key, and the delivery id receivers see."""
    return f"{event_id}/{rule_name}"


def signature(secret: str, body: bytes, timestamp_s: int) -> str:
    """``X-Trackpipe-Signature``: ``t=<unix seconds>,v1=<hex>``, the HMAC-SHA256 of
    ``"<t>." + body`` keyed with the project's webhook signing secret. The time is signed with
    the body, so a receiver that refuses old timestamps refuses replays."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"t={timestamp_s},v1={mac.hexdigest()}"


def webhook_headers(secret: str | None, delivery: str, trigger: str, body: bytes,
                    now_s: int) -> dict[str, str] | None:
    """The headers of one attempt at a webhook, signed with the project's webhook signing
    secret; None when there is no secret to sign with. A webhook never goes out unsigned:
    the service holds it until the project has a secret (a project registered before each
    had its own has none until ``projects set`` makes one)."""
    if not secret:
        return None
    return {"Content-Type": "application/json", "User-Agent": "trackpipe",
            "X-Trackpipe-Delivery": delivery, "X-Trackpipe-Trigger": trigger,
            "X-Trackpipe-Signature": signature(secret, body, now_s)}


def verify_signature(secret: str, header: str, body: bytes, now_s: int,
                     tolerance_s: int = SIGNATURE_TOLERANCE_S) -> bool:
    """What a receiver does: the header parses, its time is within ``tolerance_s`` of now,
    and its ``v1`` is the HMAC of that time and these exact bytes (compared in constant
    time)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp_s = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now_s - timestamp_s) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp_s)
    return hmac.compare_digest(expected, f"t={fields['t']},v1={fields.get('v1', '')}")


# IPv6 forms that only carry an IPv4 address: a connection to one reaches that IPv4 address
# (the kernel's dual stack, a NAT64 gateway, a 6to4 relay), so the IPv4 address is judged.
_V4_TAIL = tuple(ipaddress.ip_network(n) for n in (
    "::ffff:0:0/96",     # IPv4-mapped
    "::ffff:0:0:0/96",   # IPv4-translated (SIIT)
    "::/96",             # IPv4-compatible (deprecated), :: and ::1 among them
    "64:ff9b::/96",      # NAT64, the well-known prefix (RFC 6052)
))
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")  # the IPv4 address in bits 16-47
# Refused whatever they hold: where a local-use NAT64 prefix puts its IPv4 address is the
# operator's choice (RFC 8215), so it cannot be read back; Teredo reaches an IPv4 host behind
# a relay and no receiver needs it; site-local is the deprecated private range.
_REFUSED = tuple(ipaddress.ip_network(n) for n in ("64:ff9b:1::/48", "2001::/32", "fec0::/10"))
_ISATAP_ID, _ISATAP_MASK = 0x00005EFE, 0xFCFFFFFF  # the u/g bits of the first octet vary


def reached(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
            ) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] | None:
    """The addresses a connection to ``ip`` reaches, each to be judged: the IPv4 address an
    IPv6 form only carries (mapped, translated, compatible, NAT64, 6to4) instead of it; both
    an ISATAP address and the IPv4 address its interface id names; None for a form that is
    refused whatever it holds."""
    if isinstance(ip, ipaddress.IPv4Address):
        return (ip,)
    if any(ip in network for network in _REFUSED):
        return None
    value = int(ip)
    if any(ip in network for network in _V4_TAIL):
        return (ipaddress.IPv4Address(value & 0xFFFFFFFF),)
    if ip in _SIX_TO_FOUR:
        return (ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF),)
    if (value >> 32) & _ISATAP_MASK == _ISATAP_ID:
        return (ip, ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return (ip,)


def webhook_address_allowed(address: str, allowed: Iterable[Network] = ()) -> bool:
    """Whether a webhook may connect to ``address``: one in a network the operator allowed,
    or a public one. Loopback, private, shared, link-local (the cloud metadata service at
    169.254.169.254 among them), site-local, multicast and reserved addresses are refused,
    also when they hide in an IPv6 form that embeds an IPv4 address (``reached``)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    allowed = tuple(allowed)
    if any(ip in network for network in allowed):
        return True
    targets = reached(ip)
    return targets is not None and all(
        any(target in network for network in allowed)
        or (target.is_global and not target.is_multicast) for target in targets)


def retry_delay(attempt: int, attempts: int, first_s: float) -> float | None:
    """Seconds to wait after failed attempt ``attempt`` (1-based) of ``attempts``, doubling
    from ``first_s`` up to five minutes; None: that was the last one."""
    if attempt >= attempts:
        return None
    return min(first_s * 2 ** (attempt - 1), MAX_DELAY_S)


def retryable(status: int | None) -> bool:
    """A network failure (None), a timeout-ish or server answer is worth another attempt; a
    4xx other than 408/429 is the receiver refusing this body, which will not change."""
    return status is None or status >= 500 or status in (408, 429)
