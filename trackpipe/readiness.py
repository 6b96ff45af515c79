"""Whether each role ``trackpipe up`` runs answers yet: its ready line waits for all of them.

A role answers once a newcomer's first request would be served by it: the gateway's
``/readyz`` says 200 (Kafka and the registry read), the dashboard serves its summary, the
worker serves its web pages and its consumer group holds partitions, and so does the triggers
service's group (it has no web port). Each probe asks once and says yes or no; a refused
connection, a timeout or a Kafka error is a no, never an error: ``up`` asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from runtime.settings import Settings

GATEWAY, WORKER, TRIGGERS, DASHBOARD = ("gateway", "worker", "triggers service", "dashboard")
ROLES = (GATEWAY, WORKER, TRIGGERS, DASHBOARD)
TIMEOUT_S = 2.0


def local_url(host: str, port: int, path: str) -> str:
    """Where this machine reaches a server bound to ``host`` (any address: loopback)."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


class Probes:
    """One question per role, asked again each round with the same HTTP session and Kafka
    admin client (a worker's and the triggers' consumer groups: ``group_ids``)."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        token = f"?token={settings.admin_token}" if settings.admin_token else ""
        self.urls = {
            GATEWAY: local_url(settings.http_host, settings.http_port, "/readyz"),
            WORKER: local_url(settings.worker_web_host, settings.worker_web_port, "/metrics"),
            DASHBOARD: local_url(settings.admin_host, settings.admin_port,
                                 "/api/summary" + token),
        }
        self.group_ids = {WORKER: settings.topic_prefix + "processors",  # faust's app id
                          TRIGGERS: settings.topic("triggers")}
        self._http: aiohttp.ClientSession | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def answering(self) -> dict[str, bool]:
        """Which roles answer now."""
        checks: dict[str, Callable[[], Awaitable[bool]]] = {
            GATEWAY: lambda: self._http_ok(GATEWAY),
            WORKER: lambda: self._all(self._http_ok(WORKER), self._group_holds(WORKER)),
            TRIGGERS: lambda: self._group_holds(TRIGGERS),
            DASHBOARD: lambda: self._http_ok(DASHBOARD),
        }
        answers = await asyncio.gather(*(check() for check in checks.values()))
        return dict(zip(checks, answers, strict=True))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()

    @staticmethod
    async def _all(*probes: Awaitable[bool]) -> bool:
        return all(await asyncio.gather(*probes))

    async def _http_ok(self, role: str) -> bool:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        try:
            async with self._http.get(self.urls[role]) as answer:
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _group_holds(self, role: str) -> bool:
        """The role's consumer group is stable with a member (so partitions are assigned)."""
        try:
            if self._admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                            request_timeout_ms=int(TIMEOUT_S * 1000))
                try:
                    await admin.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await admin.close()
                    raise
                self._admin = admin
            described = await asyncio.wait_for(
                self._admin.describe_consumer_groups([self.group_ids[role]]), TIMEOUT_S)
        except (KafkaError, TimeoutError, OSError):
            return False  # not up yet, or the group's coordinator not elected yet
        # each response holds (error, group id, state, protocol type, protocol, members)
        return any(state == "Stable" and members for response in described
                   for _, _, state, _, _, members in response.groups)
