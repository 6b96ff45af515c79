"""Every topic trackpipe uses, in one table checked complete at boot.

A topic's full name is ``<prefix><name>``; the prefix comes from settings so that several
deployments (or tests) can share one cluster without seeing each other's data.
"""

from __future__ import annotations

from dataclasses import dataclass

RAW = "raw"
PROJECTS = "projects"
TICKS = "ticks"
LINKS = "links"
REBINDS = "rebinds"
ACTIONS = "actions"
VISITS = "visits"
MERGES = "merges"
DEADLETTER = "deadletter"
PROFILE_UPDATES = "profile-updates"
PROFILES = "profiles"
QUOTA_COUNTS = "quota-counts"
QUOTA = "quota"
TRIGGERS = "triggers"
FIRINGS = "firings"
JS_ACTIONS = "js-actions"
WARNINGS = "warnings"
HOUR_MS = 3_600_000
JS_ACTION_TTL_MS = 7 * 24 * HOUR_MS  # how long a queued JS action waits for its visitor
# Ingestion warnings are events, not the state of a key: deleted after a week, never compacted
# (compaction would keep one per project for ever and drop the history an operator reads).
WARNINGS_RETENTION_MS = 7 * 24 * HOUR_MS
# The processors' faust tables and their changelogs: faust names a changelog
# "<app id>-<table>-changelog" (the app id is "<prefix>processors"), but for the profiles
# table, whose changelog is the public profiles topic. Created here, not by racing workers.
TABLES = ("visitors", "quota_counts", "identities", "profiles", "quota_totals")
CHANGELOGS = {table: PROFILES if table == "profiles" else f"processors-{table}-changelog"
              for table in TABLES}


# The largest message a topic takes (its max.message.bytes; producers are set to match). The
# broker's default is 1 MiB: a raw record can be bigger (a 1 MiB body plus a 64 KiB URL,
# MAX_RECORD_BYTES), and so can what processing it makes (its action as JSON, a dead letter).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# The largest raw record a gateway publishes; a request that would make a bigger one is refused
# with 413 before it is acknowledged (half the message limit: room for JSON's escapes later).
MAX_RECORD_BYTES = MAX_MESSAGE_BYTES // 2


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool
    partitions: int | None  # None: the configured raw partition count (co-partitioned)
    purpose: str
    retention_ms: int | None = None  # None: the cluster default


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(RAW, compacted=False, partitions=None,
              purpose="every accepted tracking request, as received, in envelopes "
                      "(schemas.raw, schemas.envelope)"),
    TopicSpec(PROJECTS, compacted=True, partitions=1,
              purpose="the project registry, keyed by project name (schemas.project)"),
    TopicSpec(TICKS, compacted=False, partitions=None, retention_ms=HOUR_MS,
              purpose="clock ticks per raw partition, so visits close without traffic"),
    TopicSpec(LINKS, compacted=False, partitions=None,
              purpose="identity links in envelopes, to the identifier's partition"),
    TopicSpec(REBINDS, compacted=False, partitions=None,
              purpose="answers to links in envelopes, to the asking visitor's partition"),
    TopicSpec(ACTIONS, compacted=False, partitions=None,
              purpose="enriched actions and updates (processors.actions), for triggers"),
    TopicSpec(VISITS, compacted=False, partitions=None,
              purpose="visit started / visit ended records"),
    TopicSpec(MERGES, compacted=False, partitions=None,
              purpose="every profile merge: source, into, identifier, time"),
    TopicSpec(PROFILE_UPDATES, compacted=False, partitions=None,
              purpose="profile updates, merges and folds in envelopes (schemas.profile)"),
    TopicSpec(PROFILES, compacted=True, partitions=None,
              purpose="every profile's current state (schemas.profile); the profiles "
                      "table's changelog"),
    TopicSpec(QUOTA_COUNTS, compacted=False, partitions=None,
              purpose="raw partitions' action counts of a project's month, in envelopes"),
    TopicSpec(QUOTA, compacted=True, partitions=1,
              purpose="each project's quota state for the month (schemas.quota)"),
    TopicSpec(TRIGGERS, compacted=True, partitions=1,
              purpose="trigger rules, keyed by project + rule name (schemas.trigger)"),
    TopicSpec(FIRINGS, compacted=True, partitions=None,
              purpose="trigger firings not yet delivered, in their action's partition number"),
    TopicSpec(JS_ACTIONS, compacted=True, partitions=1, retention_ms=JS_ACTION_TTL_MS,
              purpose="JavaScript actions queued for a visitor's next tracking response"),
    TopicSpec(DEADLETTER, compacted=False, partitions=None,
              purpose="records that could not be processed, with the error and source offset"),
    TopicSpec(WARNINGS, compacted=False, partitions=None, retention_ms=WARNINGS_RETENTION_MS,
              purpose="ingestion warnings: what the pipeline changed or refused of what a "
                      "sender sent, keyed by project (schemas.warning)"),
    *(TopicSpec(CHANGELOGS[table], compacted=True, partitions=None,
                purpose=f"changelog of the processors' {table} table")
      for table in TABLES if CHANGELOGS[table] != PROFILES),
)
