"""The one way a test waits: for the thing, not for the time, polled and with a bound.

A fixed sleep is too long on a quiet machine and too short on a loaded one. ``wait_until``
asks ``probe`` again and again until ``until`` accepts what it answered, and fails after
``timeout_s`` saying what never happened; ``wait_until_async`` is the same for a test running
in an event loop (it sleeps with ``asyncio``, so the loop goes on serving meanwhile, and its
probe may be a coroutine function).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

Described = str | Callable[[Any], str]


def wait_until(probe: Callable[[], Any], timeout_s: float, what: Described, *,
               until: Callable[[Any], Any] = bool, every_s: float = 0.1) -> Any:
    """``probe()``'s first answer that ``until`` accepts (by default: a true one), asked every
    ``every_s``; an AssertionError after ``timeout_s`` saying ``what`` (a callable is given the
    last answer, to show it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if until(value):
            return value
        _check(deadline, timeout_s, what, value)
        time.sleep(every_s)


async def wait_until_async(probe: Callable[[], Any], timeout_s: float, what: Described, *,
                           until: Callable[[Any], Any] = bool, every_s: float = 0.05) -> Any:
    """``wait_until`` inside an event loop: ``probe`` may return an awaitable."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if until(value):
            return value
        _check(deadline, timeout_s, what, value)
        await asyncio.sleep(every_s)


def _check(deadline: float, timeout_s: float, what: Described, last: Any) -> None:
    if time.monotonic() >= deadline:
        said = what(last) if callable(what) else what
        raise AssertionError(f"{said} (not within {timeout_s:g} s)")
