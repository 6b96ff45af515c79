"""The outputs of recently processed records, per raw partition, for sending them again.

The day log is the processors' commit point: a record whose line is written is never processed
again. Its outputs (actions, visits, links, profile updates, and the changelog records of its
table writes) are produced after that, so a ``kill -9`` in between would lose them for good.
So each record's outputs are appended here first, as bytes, and a record that comes back after
a crash with its line already written has them sent again (and its table writes applied
again). Consumers take such a repeat as what it is: profile updates and links are idempotent,
triggers skip event ids they fired, visit records and changelog records repeat byte for byte.

Only the last moments matter (what faust had not committed), so a file is rotated once it
passes ``max_bytes`` and only the previous one is kept.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import IO

from processors.jsonline import to_json

Output = tuple[str, bytes | None, bytes | None]  # topic, key, value (None: a tombstone)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class Outbox:
    def __init__(self, root: Path, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._files: dict[int, IO[bytes]] = {}
        self._loaded: dict[int, dict[int, list[Output]]] = {}

    def _path(self, partition: int, previous: bool = False) -> Path:
        return self.root / f"part-{partition:03d}.jsonl{'.1' if previous else ''}"

    def record(self, partition: int, offset: int, outputs: list[Output]) -> None:
        f = self._files.get(partition)
        if f is None:
            self.root.mkdir(parents=True, exist_ok=True)
            f = self._files[partition] = open(  # noqa: SIM115 - kept open, like the day logs
                self._path(partition), "ab", buffering=0)
        line = {"o": offset, "out": [[t, _b64(k), _b64(v)] for t, k, v in outputs]}
        f.write(to_json(line) + b"\n")
        if f.tell() > self.max_bytes:
            f.close()
            del self._files[partition]
            os.replace(self._path(partition), self._path(partition, previous=True))

    def find(self, partition: int, offset: int) -> list[Output] | None:
        """The outputs recorded for ``offset`` (None: not found, too old)."""
        if partition not in self._loaded:
            self._loaded[partition] = self._load(partition)
        return self._loaded[partition].get(offset)

    def forget(self, partitions: object) -> None:
        """After a rebalance another worker may have written these partitions' files."""
        for partition in partitions:  # type: ignore[attr-defined]
            self._loaded.pop(partition, None)
            f = self._files.pop(partition, None)
            if f is not None:
                f.close()

    def _load(self, partition: int) -> dict[int, list[Output]]:
        found: dict[int, list[Output]] = {}
        for path in (self._path(partition, previous=True), self._path(partition)):
            if not path.exists():
                continue
            with open(path, "rb") as f:
                for raw in f:
                    try:
                        line = json.loads(raw)
                        found[line["o"]] = [(t, _unb64(k), _unb64(v))  # type: ignore[misc]
                                            for t, k, v in line["out"]]
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line: its record had no day-log line yet
        return found

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
