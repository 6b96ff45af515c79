"""JavaScript actions queued by triggers, handed to the visitor's next script response once.

The triggers service writes each queued action to the compacted ``js-actions`` topic keyed
``<project>\\n<visitor key>\\n<delivery id>``; every gateway follows the topic into this view.
The gateway that answers the visitor's next default (JavaScript) request takes the visitor's
actions out of its view and tombstones them, so the others forget them too. Two gateways
answering the same visitor in the same instant could both include an action; nothing else
repeats one.

A visitor may never come back, so an action waits at most ``JS_ACTION_TTL_MS`` (7 days) from
when this gateway learned of it; the topic deletes records of that age too
(``compact,delete``), so neither the gateways' memory nor the topic grows without bound. And
within the week: a visitor keeps at most ``MAX_PER_VISITOR`` actions (the newest; an older one
makes room), a project at most ``MAX_PER_PROJECT`` (a new one beyond is not kept). What is not
kept is counted in ``dropped``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable

from schemas.topics import JS_ACTION_TTL_MS

MAX_PER_VISITOR = 20
MAX_PER_PROJECT = 100_000


class JsQueue:
    def __init__(self, clock: Callable[[], float], ttl_ms: int = JS_ACTION_TTL_MS) -> None:
        """``clock``: seconds, monotonic (``time.monotonic``; given, as this module is pure)."""
        self._pending: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        self._learned: deque[tuple[float, tuple[str, str], str]] = deque()  # oldest first
        self._ttl_s = ttl_ms / 1000
        self._clock = clock
        self._per_project: dict[str, int] = defaultdict(int)
        self.dropped = 0

    def apply(self, key: str, code: bytes | None) -> None:
        """A record of the topic: queued code, or a tombstone (taken by some gateway)."""
        self._expire()
        project, rest = key.split("\n", 1)
        visitor_key, delivery = rest.rsplit("\n", 1)
        if code is None:
            self._forget((project, visitor_key), delivery)
            return
        queued = self._pending[(project, visitor_key)]
        if delivery not in queued:
            if self._per_project[project] >= MAX_PER_PROJECT:
                self.dropped += 1
                if not queued:
                    del self._pending[(project, visitor_key)]
                return
            if len(queued) >= MAX_PER_VISITOR:  # the oldest makes room
                self._forget((project, visitor_key), next(iter(queued)))
                self.dropped += 1
                queued = self._pending[(project, visitor_key)]
            self._per_project[project] += 1
        queued[delivery] = code.decode("utf-8", "replace")
        self._learned.append((self._clock(), (project, visitor_key), delivery))

    def _forget(self, visitor: tuple[str, str], delivery: str) -> None:
        queued = self._pending.get(visitor)
        if queued is not None and queued.pop(delivery, None) is not None:
            self._per_project[visitor[0]] -= 1
            if not queued:
                del self._pending[visitor]

    def _expire(self) -> None:
        limit = self._clock() - self._ttl_s
        while self._learned and self._learned[0][0] < limit:
            _, visitor, delivery = self._learned.popleft()
            self._forget(visitor, delivery)

    def take(self, project: str, visitor_key: str) -> tuple[list[str], bytes]:
        """The visitor's record keys to tombstone and the script that runs their actions,
        each on its own so that one that throws does not stop the others."""
        if not visitor_key or not self._pending:
            return [], b""
        self._expire()
        queued = self._pending.pop((project, visitor_key), None)
        if not queued:
            return [], b""
        self._per_project[project] -= len(queued)
        keys = [f"{project}\n{visitor_key}\n{delivery}" for delivery in queued]
        script = "".join(f"try {{\n{code}\n}} catch (e) {{ console.error(e); }}\n"
                         for code in queued.values())
        return keys, script.encode()

    def __len__(self) -> int:
        return sum(len(q) for q in self._pending.values())
