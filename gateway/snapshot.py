"""A local copy of the project registry, so a gateway restarted during a Kafka outage still
knows its projects and can spool (202) instead of refusing everything (503).

Written atomically (a temporary file of its own, fsync, rename) with mode 0600 — it holds
project secrets — each time the registry view changes after the topic was read to its end.
The processes of ``gateway --workers N`` share the file; each writes through its own temporary
file, and the last rename wins, which is any of them: they follow the same topic. Saving is a
convenience: a save the disk refuses is logged and the gateway goes on following the topic. A
missing or unreadable snapshot is no snapshot: the gateway then waits for Kafka as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import msgpack

from schemas.project import ProjectRecord

log = logging.getLogger(__name__)


def save(path: Path, records: list[ProjectRecord]) -> None:
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:  # mkstemp: mode 0600, a name no other writer has
            f.write(msgpack.packb([record.to_bytes() for record in records]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("the registry snapshot %s was not saved: %s", path, exc)
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def load(path: Path) -> list[ProjectRecord] | None:
    try:
        return [ProjectRecord.from_bytes(data) for data in msgpack.unpackb(path.read_bytes())]
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: ignore it, Kafka is the truth
        log.warning("ignoring the registry snapshot %s: %s", path, exc)
        return None
