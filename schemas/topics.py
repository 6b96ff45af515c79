"""Every topic trackpipe uses, in one table checked complete at boot.

A topic's full name is ``<prefix><name>``; the prefix comes from settings so that several
deployments (or tests) can share one cluster without seeing each other's data.
"""

from __future__ import annotations

from dataclasses import dataclass

RAW = "raw"
PROJECTS = "projects"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool
    partitions: int | None  # None: the configured raw partition count
    purpose: str


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(RAW, compacted=False, partitions=None,
              purpose="every accepted tracking request, as received (schemas.raw)"),
    TopicSpec(PROJECTS, compacted=True, partitions=1,
              purpose="the project registry, keyed by project name (schemas.project)"),
)
