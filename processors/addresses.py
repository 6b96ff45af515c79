"""What the processors may do with a request's address: locate it, and what of it to keep. Pure.

``locatable`` is the address a location lookup may be asked about: a public unicast address,
never a private, loopback, link-local, shared (CGNAT), documentation, benchmarking, multicast or
reserved one, whose place in the world says nothing about the visitor (an IPv4-mapped IPv6
address is its IPv4 address). The ranges are written here rather than taken from Python's
``is_global``, whose tables change between versions and which costs ~10 µs a call.

``anonymize`` is what a project with ``--ip-anonymize`` keeps: the last octet of an IPv4
address and the last 80 bits of an IPv6 one zeroed (what Google Analytics and Matomo keep);
it runs after the lookup and before anything is logged or published. Text that is no address
keeps nothing: there is no telling which part of it would identify the visitor.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv4 ranges with no place in the world (RFC 6890 and its successors), as [first, last].
_V4_SPECIAL = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
               "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24",
               "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
               "224.0.0.0/4", "240.0.0.0/4")
# IPv6: only global unicast (2000::/3) is located, less the special ranges inside it.
_V6_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_SPECIAL = ("2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20")


def _intervals(networks: tuple[str, ...]) -> tuple[list[int], list[int]]:
    spans = sorted((int(n.network_address), int(n.broadcast_address))
                   for n in map(ipaddress.ip_network, networks))
    return [first for first, _ in spans], [last for _, last in spans]


_V4_FIRST, _V4_LAST = _intervals(_V4_SPECIAL)
_V6_FIRST, _V6_LAST = _intervals(_V6_SPECIAL)


def _inside(value: int, firsts: list[int], lasts: list[int]) -> bool:
    i = bisect_right(firsts, value) - 1
    return i >= 0 and value <= lasts[i]


def _v4(text: str) -> int | None:
    """A dotted IPv4 address's value, as ``ipaddress`` would read it (no leading zeros), or
    None: most addresses are these, and ``ipaddress`` takes ten times as long."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isdigit() or not part.isascii() or len(part) > 3 or (
                len(part) > 1 and part[0] == "0"):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def parse(text: str) -> Address | None:
    """The address ``text`` names (an IPv6 zone dropped), or None."""
    text = text.strip()
    value = _v4(text)
    if value is not None:
        return ipaddress.IPv4Address(value)
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(address.packed)
    return address


def locatable(text: str) -> Address | None:
    """The public address to look ``text`` up by, or None (private, reserved, malformed)."""
    value = _v4(text.strip())
    if value is not None:  # the common case, without building an address object
        return None if _inside(value, _V4_FIRST, _V4_LAST) else ipaddress.IPv4Address(value)
    address = parse(text)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            value = int(address)
            if address not in _V6_UNICAST or _inside(value, _V6_FIRST, _V6_LAST):
                return None
            return address
    if address is None or _inside(int(address), _V4_FIRST, _V4_LAST):
        return None
    return address


V4_KEPT = 0xFFFF_FF00                         # the last octet zeroed
V6_KEPT = ((1 << 48) - 1) << 80               # the first 48 bits kept, the last 80 zeroed


def anonymize(text: str) -> str:
    """``text`` with the visitor's part of the address zeroed; "" if it is no address."""
    address = parse(text)
    if address is None:
        return ""
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) & V4_KEPT))
    mapped = address.ipv4_mapped
    if mapped is not None:  # an IPv4 visitor on a dual-stack socket: its IPv4 rule
        return "::ffff:" + str(ipaddress.IPv4Address(int(mapped) & V4_KEPT))
    return str(ipaddress.IPv6Address(int(address) & V6_KEPT))
