"""How a worker treats a message whose handling fails: retry what is transient, dead-letter
what is the message's own fault, and never stop the partition for either.

Transient I/O (a ``KafkaError``: a broker hiccup; an ``OSError``: a full disk) is not the
message's fault: it is retried with backoff (``RETRY_FIRST_S`` doubling to ``RETRY_MAX_S``),
holding the partition, because dead-lettering a good record would take it out of the day logs.
Anything else is the message's own fault: it goes to the dead-letter topic and the stream goes
on. A handler may be a function or a coroutine function; it must leave nothing half done when
it raises (the stages decide first and apply last, see ``processors.journal``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgpack
from aiokafka.errors import KafkaError

from schemas import envelope

log = logging.getLogger(__name__)

TRANSIENT = (KafkaError, OSError)
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


def backoff() -> Iterator[float]:
    """The waits between retries of transient I/O, in seconds: ``RETRY_FIRST_S``, doubling,
    at most ``RETRY_MAX_S``; endless (the caller stops when its retry succeeds)."""
    wait_s = RETRY_FIRST_S
    while True:
        yield wait_s
        wait_s = min(wait_s * 2, RETRY_MAX_S)


async def guarded(handle: Callable[[Any], Any], message: Any,
                  dead_letter: Callable[[Any, BaseException], None],
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    waits = backoff()
    while True:
        try:
            done = handle(message)
            if inspect.isawaitable(done):
                await done
            return
        except TRANSIENT as exc:
            wait_s = next(waits)
            log.warning("retrying %s[%s]@%s in %.1f s: %r", message.topic, message.partition,
                        message.offset, wait_s, exc)
            await sleep(wait_s)
        except Exception as exc:  # a message's own fault must not stop the partition
            log.warning("dead letter from %s[%s]@%s: %r", message.topic, message.partition,
                        message.offset, exc)
            dead_letter(message, exc)
            return


def each_item(message: Any, handle: Callable[[int, Any], None],
              dead_letter: Callable[[Any, BaseException, int, bytes], None]) -> None:
    """``handle(partition, item)`` for each item of the envelope ``message`` carries, each on
    its own: an item that fails by its own fault (a bug, a version skew) is its own dead
    letter (``dead_letter(message, exc, index, item)``) and the items after it are still
    handled. Transient I/O fails the message, which ``guarded`` retries whole; an envelope
    that cannot be read is the message's fault, whole."""
    for index, item in enumerate(envelope.unpack(message.value)):
        try:
            handle(message.partition, item)
        except TRANSIENT:
            raise
        except Exception as exc:
            log.warning("dead letter from %s[%s]@%s#%s: %r", message.topic, message.partition,
                        message.offset, index, exc)
            dead_letter(message, exc, index, msgpack.packb(item))
