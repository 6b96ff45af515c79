"""Webhooks held for want of a signing secret: a webhook is never sent unsigned.

A project registered before each project had a webhook signing secret (or not registered)
has its webhooks held: the firing stays pending in ``firings`` (Kafka holds it, not memory),
only the partitions holding it are noted here, and the log says once what to do. When the
registry gives the project a secret, ``release`` hands those partitions back to be read again,
and the webhooks go out, signed.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping

from schemas.firing import Firing

log = logging.getLogger(__name__)


class HeldWebhooks:
    def __init__(self, counts: MutableMapping[str, int]) -> None:
        self.counts = counts
        self._partitions: dict[str, set[int]] = {}  # project: partitions holding its webhooks

    def hold(self, firing: Firing) -> None:
        project = firing.rule.project
        if project not in self._partitions:
            log.warning("project %s has no webhook signing secret (it was registered before "
                        "each project had one, or is not registered): its webhooks are held, "
                        "not sent unsigned, until it has one; `trackpipe projects set %s "
                        "--rotate-webhook-secret` makes one and prints it", project, project)
        self._partitions.setdefault(project, set()).add(firing.partition)
        self.counts["held unsigned"] += 1

    def release(self, project: str) -> set[int]:
        """``project`` has a signing secret now: the partitions holding its webhooks (to be
        read again), or none."""
        partitions = self._partitions.pop(project, set())
        if partitions:
            log.warning("project %s has a webhook signing secret now: its held webhooks go "
                        "out, signed", project)
        return partitions
