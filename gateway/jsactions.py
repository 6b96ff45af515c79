"""JavaScript actions queued by triggers, handed to the visitor's next script response once.

The triggers service writes each queued action to the compacted ``js-actions`` topic keyed
``<project>\\n<visitor key>\\n<delivery id>``; every gateway follows the topic into this view.
The gateway that answers the visitor's next default (JavaScript) request takes the visitor's
actions out of its view and tombstones them, so the others forget them too. Two gateways
answering the same visitor in the same instant could both include an action; nothing else
repeats one.
"""

from __future__ import annotations

from collections import defaultdict


class JsQueue:
    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)

    def apply(self, key: str, code: bytes | None) -> None:
        """A record of the topic: queued code, or a tombstone (taken by some gateway)."""
        project, rest = key.split("\n", 1)
        visitor_key, delivery = rest.rsplit("\n", 1)
        if code is not None:
            self._pending[(project, visitor_key)][delivery] = code.decode("utf-8", "replace")
            return
        queued = self._pending.get((project, visitor_key))
        if queued is not None:
            queued.pop(delivery, None)
            if not queued:
                del self._pending[(project, visitor_key)]

    def take(self, project: str, visitor_key: str) -> tuple[list[str], bytes]:
        """The visitor's record keys to tombstone and the script that runs their actions,
        each on its own so that one that throws does not stop the others."""
        if not visitor_key or not self._pending:
            return [], b""
        queued = self._pending.pop((project, visitor_key), None)
        if not queued:
            return [], b""
        keys = [f"{project}\n{visitor_key}\n{delivery}" for delivery in queued]
        script = "".join(f"try {{\n{code}\n}} catch (e) {{ console.error(e); }}\n"
                         for code in queued.values())
        return keys, script.encode()

    def __len__(self) -> int:
        return sum(len(q) for q in self._pending.values())
