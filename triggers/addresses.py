"""Where a webhook may connect: the resolver the triggers service's HTTP client uses.

A webhook URL is typed by a user and its host is resolved by whoever answers DNS for it, so
it could name the metadata service of the machine (169.254.169.254), the broker, or anything
on the private network: server-side request forgery. ``GuardedResolver`` keeps only the
addresses ``triggers.rules.webhook_address_allowed`` allows, at every connection (a name that
resolved to a public address when the rule was added and to a private one now is refused
now); ``addresses`` answers the same for the service's own check before a delivery, which
also covers URLs that name an IP address (the HTTP client does not resolve those).
``WebClient`` is the service's one HTTP client, its connections resolved that way.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from triggers.rules import Network, webhook_address_allowed


class GuardedResolver(AbstractResolver):
    def __init__(self, allowed: Iterable[Network] = ()) -> None:
        self.allowed = tuple(allowed)
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        found = await self._inner.resolve(host, port, family)
        kept = [info for info in found if webhook_address_allowed(info["host"], self.allowed)]
        if not kept:
            raise OSError(f"{host} resolves only to addresses webhooks may not reach")
        return kept

    async def addresses(self, host: str) -> list[str]:
        """The addresses of ``host`` a webhook may connect to (empty: none may)."""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            found = [host]
        except ValueError:
            found = [info["host"] for info in await self._inner.resolve(host, 0,
                                                                       socket.AF_UNSPEC)]
        return [address for address in found if webhook_address_allowed(address, self.allowed)]

    async def close(self) -> None:
        await self._inner.close()


class WebClient:
    """The triggers service's HTTP clients, started in the service's loop: ``session`` for
    webhooks, whose addresses senders' rules name, every connection through
    ``GuardedResolver``; ``lookups`` for the profile lookups at the workers, whose address is
    the operator's own setting (``TRACKPIPE_WORKER_URL``: a private address in compose),
    never a sender's."""

    def __init__(self, allowed: Iterable[Network], timeout_s: float) -> None:
        self.allowed = tuple(allowed)
        self.timeout_s = timeout_s
        self._resolver: GuardedResolver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lookups: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._resolver = GuardedResolver(self.allowed)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self._resolver),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._lookups = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        for session in (self._session, self._lookups):
            if session is not None:
                await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the web client is not started")
        return self._session

    @property
    def lookups(self) -> aiohttp.ClientSession:
        if self._lookups is None:
            raise RuntimeError("the web client is not started")
        return self._lookups

    async def refused(self, url: str) -> str | None:
        """Why a webhook may not be called (every address its host resolves to is loopback,
        private, link-local... and not allowed), or None. The connection itself goes through
        ``GuardedResolver``, so a name that resolves elsewhere by then is refused too."""
        if self._resolver is None:
            raise RuntimeError("the web client is not started")
        host = urlsplit(url).hostname or ""
        try:
            addresses = await self._resolver.addresses(host)
        except OSError as exc:
            return None if not host else f"{host} does not resolve: {exc}"  # retried later
        if not addresses:
            return (f"{host} resolves only to addresses webhooks may not reach (loopback, "
                    "private, link-local); TRACKPIPE_WEBHOOK_ALLOW_NETWORKS allows a network")
        return None
