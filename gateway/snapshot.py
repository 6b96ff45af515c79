"""A local copy of the project registry, so a gateway restarted during a Kafka outage still
knows its projects and can spool (202) instead of refusing everything (503).

Written atomically (temporary file, fsync, rename) with mode 0600 — it holds project secrets —
each time the registry view changes after the topic was read to its end. A missing or
unreadable snapshot is no snapshot: the gateway then waits for Kafka as before.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgpack

from schemas.project import ProjectRecord

log = logging.getLogger(__name__)


def save(path: Path, records: list[ProjectRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgpack.packb([record.to_bytes() for record in records]))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def load(path: Path) -> list[ProjectRecord] | None:
    try:
        return [ProjectRecord.from_bytes(data) for data in msgpack.unpackb(path.read_bytes())]
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: ignore it, Kafka is the truth
        log.warning("ignoring the registry snapshot %s: %s", path, exc)
        return None
