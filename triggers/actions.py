"""What an action fires: the rules of its project and event whose conditions it meets,
judged against the visitor's profile as the workers have it (following merges).

The conditions are ``triggers.rules`` (pure); this module brings the profile: looked up at
the worker that owns it, or, when no worker answers, none for a few seconds (the rules then
see only the properties the action sent), so that a worker away costs one timeout, not one
per action.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp

from runtime.settings import Settings
from schemas.firing import Firing
from schemas.profile import shown
from triggers import rules
from triggers.addresses import WebClient
from triggers.definitions import Definitions

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 2.0
LOOKUP_PAUSE_S = 5.0
MAX_MERGES_FOLLOWED = 8


class ActionReader:
    def __init__(self, settings: Settings, definitions: Definitions, web: WebClient) -> None:
        self.settings = settings
        self.definitions = definitions
        self.web = web
        self._lookup_paused_until = 0.0

    async def firings(self, partition: int, action: dict[str, Any]) -> list[Firing]:
        """The firings of ``action`` (read from ``partition`` of ``actions``)."""
        if not rules.can_fire(action):
            return []
        candidates = self.definitions.candidates(action)
        if not candidates:
            return []
        profile = await self.profile(action["project"], action.get("profile"))
        return [Firing(rules.firing_id(action["id"], rule.name), partition, rule, action,
                       profile).bounded()
                for rule in rules.matching(candidates, action, profile)]

    async def profile(self, project: str, profile_id: str | None) -> dict[str, Any] | None:
        """The visitor's profile from the workers, following merges; None when no worker
        answers (the rule then sees only the properties this action sent)."""
        if not profile_id or time.monotonic() < self._lookup_paused_until:
            return None
        url = self.settings.worker_base_url + "/lookup/profile"
        try:
            for _ in range(MAX_MERGES_FOLLOWED):
                async with self.web.lookups.get(
                        url, params={"key": f"{project}\n{profile_id}"},
                        headers={"Authorization": f"Bearer {self.settings.worker_token}"},
                        timeout=aiohttp.ClientTimeout(total=LOOKUP_TIMEOUT_S)) as answer:
                    found = await answer.json(content_type=None) if answer.status == 200 else None
                if not found or not found.get("merged_into"):
                    break
                profile_id = found["merged_into"]
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("profile lookup at %s failed (%s); firing on the action's own "
                        "properties for %.0f s", url, exc, LOOKUP_PAUSE_S)
            self._lookup_paused_until = time.monotonic() + LOOKUP_PAUSE_S
            return None
        if not found:
            return None
        return shown(found)
