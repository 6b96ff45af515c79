"""Which address a request came from (SPEC §2): the peer, unless a trusted proxy forwarded it.

``X-Forwarded-For`` is read right to left and the first address that is not a trusted proxy
wins, so a client cannot spoof its address by sending the header itself. An ``ip`` parameter
overrides the result when it is a valid address (server-side senders forward their visitors').
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_ip(peer: str, forwarded_for: str, ip_param: str,
              trusted: tuple[Network, ...]) -> str:
    if ip_param:
        try:
            return str(ipaddress.ip_address(ip_param.strip()))
        except ValueError:
            pass  # not an address: keep what the connection says
    if not (trusted and forwarded_for and _trusted(peer, trusted)):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
