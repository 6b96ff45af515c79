"""faust's consumer hands each message of the stages' topics straight to the worker.

faust-streaming takes a message to an agent in three steps, each paid per message: its fetcher
awaits the conductor's callback inside ``Service.wait_first`` (four tasks made, three of them
cancelled), the conductor builds an ``Event`` and queues it on the agent's channel, and the
agent's stream takes it off the queue (a loop turn, the sensors, an ack under a lock). A faust
agent that does nothing took 208 µs of a core a message on this machine, and a bare aiokafka
consumer that decodes the same envelopes 86 µs (docs/benchmarks.md, session 10): the largest
cost of a worker outside its stages.

``install`` makes the consumer's callback handle a message of the stages' topics itself, in the
order the fetcher reads them and one at a time, as the agents did with ``concurrency=1``: it
waits for flow control as the conductor does (suspended through a rebalance), tracks the
message so that a rebalance's ``wait_empty`` waits for it, and acks it once handled, so faust
commits what was handled and no more. The fetcher's ``wait_first`` becomes ``eager``: the
callback runs inline up to its first suspension, and only a callback that does suspend (waiting
for a partition's lock, the registry, a retry) is raced in tasks against the flow's suspension,
as faust does for every message. A message of any other topic (faust's own) goes to the
conductor as before.

faust's fetcher gives the event loop a turn only every hundred messages, and a message that
never suspends gives it none: a worker reading a backlog kept its commit waiting, and with it
everything the commit lets go (one worker held 704 MB after 150,000 visitors against 411 MB
through faust's streams). So the callback yields once ``TURN_S`` has passed since the last time
(399 MB in the same benchmark, same rate).

A rebalance that suspends the flow cancels a callback that is suspended: the message is then
neither handled nor acked, and is fetched again in order by the worker's gap checks
(``Worker._raw``, ``Worker._in_order``), as when faust's own queues drop what they held.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any

import faust
from mode.services import WaitResults

WaitFirst = Callable[..., Awaitable[WaitResults]]
TURN_S = 0.005  # the longest the handlers keep the event loop from its other tasks


def install(app: faust.App, handle: Callable[[Any], Awaitable[None]],
            topics: Collection[str]) -> None:
    """Make the consumer ``app`` creates hand each message of ``topics`` to ``handle``; call
    before the app starts (its consumer is made when first asked for)."""
    if app._consumer is not None:
        raise RuntimeError("the app's consumer was made before its callback was replaced")
    new_consumer = app._new_consumer
    acquire = app.flow_control.acquire

    def made() -> Any:
        consumer = new_consumer()
        conductor = consumer.callback
        turn_at = 0.0

        async def on_message(message: Any) -> None:
            await acquire()
            if message.topic not in topics:
                await conductor(message)
                return
            consumer.track_message(message)
            await handle(message)
            consumer.ack(message)
            nonlocal turn_at
            if time.monotonic() >= turn_at:  # the loop's other tasks: timers, the commit
                await asyncio.sleep(0)
                turn_at = time.monotonic() + TURN_S

        consumer.callback = on_message
        consumer.wait_first = eager(consumer.wait_first)
        return consumer

    app._new_consumer = made  # type: ignore[method-assign]


def eager(wait_first: WaitFirst) -> WaitFirst:
    """``wait_first`` that first runs its first coroutine inline: finished without suspending,
    it is the winner at once and no task is made (asyncio's eager tasks, Python 3.12);
    suspended, the rest of it is raced against the others by ``wait_first`` itself."""
    async def eager_wait_first(*coros: Any, timeout: float | None = None) -> WaitResults:
        first = coros[0]
        if not asyncio.iscoroutine(first):
            return await wait_first(*coros, timeout=timeout)
        try:
            waiting = first.send(None)
        except BaseException as exc:  # noqa: BLE001 - finished: the others are not awaited
            for other in coros[1:]:
                if asyncio.iscoroutine(other):
                    other.close()
            if isinstance(exc, StopIteration):
                return WaitResults([first], [exc.value], False)
            raise
        return await wait_first(resumed(first, waiting), *coros[1:], timeout=timeout)

    return eager_wait_first


async def resumed(coro: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    """The rest of ``coro``, which yielded ``waiting`` when it suspended, run as a task would
    have run it: resumed when ``waiting`` is done, with its exception thrown in (a cancelled
    ``resumed`` cancels ``waiting``, and ``coro`` sees the ``CancelledError`` where it
    waited)."""
    while True:
        thrown: BaseException | None = None
        try:
            if waiting is None:  # a bare yield: asyncio.sleep(0)
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False  # taken, as a task takes it
                await waiting
        except BaseException as exc:  # noqa: BLE001 - thrown into coro, as a task would
            thrown = exc
        try:
            waiting = coro.send(None) if thrown is None else coro.throw(thrown)
        except StopIteration as done:
            return done.value
