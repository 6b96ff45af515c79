"""What the triggers service follows: the trigger rules and the project registry.

Both are compacted topics, kept as views (``runtime.compacted``) and followed from their
beginning; ``ready`` is set once both were read to their end, as firing against half the
rules would miss firings. The registry is followed for the projects' webhook signing
secrets: a project that has one is announced (``on_secret``), so that webhooks held for want
of it go out.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from runtime import compacted, registry
from schemas.project import ProjectRecord
from schemas.trigger import TriggerRule


class Definitions:
    def __init__(self, on_secret: Callable[[str], None]) -> None:
        self.rules: dict[str, dict[str, TriggerRule]] = defaultdict(dict)  # project: name: rule
        self.projects: dict[str, ProjectRecord] = {}
        self.ready = asyncio.Event()
        self._on_secret = on_secret

    async def follow(self, bootstrap: str, rules_topic: str, projects_topic: str) -> None:
        """Follow both topics, forever (each started again after a failure)."""
        rules_read, projects_read = asyncio.Event(), asyncio.Event()

        async def both_read() -> None:
            await rules_read.wait()
            await projects_read.wait()
            self.ready.set()

        await asyncio.gather(
            registry.follow_forever(bootstrap, rules_topic, self.apply_rule, rules_read.set,
                                    TriggerRule.from_bytes),
            registry.follow_forever(bootstrap, projects_topic, self.apply_project,
                                    projects_read.set, ProjectRecord.from_bytes),
            both_read())

    def apply_rule(self, key: str, rule: TriggerRule | None) -> None:
        project, name = key.split("\n", 1)
        compacted.apply(self.rules[project], name, rule)

    def apply_project(self, name: str, record: ProjectRecord | None) -> None:
        compacted.apply(self.projects, name, record)
        if record is not None and record.webhook_secret:
            self._on_secret(name)

    def candidates(self, action: dict[str, Any]) -> list[TriggerRule]:
        """The rules of the action's project and event (their conditions not yet checked)."""
        return [rule for rule in self.rules.get(action.get("project", ""), {}).values()
                if rule.event == action.get("event")]

    def webhook_secret(self, project: str) -> str | None:
        record = self.projects.get(project)
        return record.webhook_secret if record is not None else None
