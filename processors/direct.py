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
tracks the message so that a rebalance's ``wait_empty`` waits for it, handles it to the end and
acks it, so faust commits what was handled and no more. The fetcher awaits that callback in its
own task instead of racing it in tasks against the flow's suspension (``Service.wait_first``):
a message that never suspends costs no task, and one that does (waiting for a partition's
lock, the registry, a retry) is finished before a rebalance goes on, as the agent's message in
hand was. Cancelling it there would leave it tracked and unacked, and ``wait_empty`` would wait
for it until the worker stopped; racing it in another task would run its second half outside
the task its ``asyncio.timeout`` is bound to. While the flow is suspended the callback drops
what it is handed, as faust's fetcher does (the next owner reads it again from the commit),
and a wait for flow control is still raced against the suspension. A message of any other
topic (faust's own) goes to the conductor, raced as before.

faust's fetcher gives the event loop a turn only every hundred messages, and a message that
never suspends gives it none: a worker reading a backlog kept its commit waiting, and with it
everything the commit lets go (one worker held 704 MB after 150,000 visitors against 411 MB
through faust's streams). So the callback yields once ``TURN_S`` has passed since the last time
(399 MB in the same benchmark, same rate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import faust
from mode.services import WaitResults

TURN_S = 0.005  # the longest the handlers keep the event loop from its other tasks


def install(app: faust.App, handle: Callable[[Any], Awaitable[None]],
            topics: Collection[str]) -> None:
    """Make the consumer ``app`` creates hand each message of ``topics`` to ``handle``; call
    before the app starts (its consumer is made when first asked for)."""
    if app._consumer is not None:
        raise RuntimeError("the app's consumer was made before its callback was replaced")
    new_consumer = app._new_consumer
    flow = app.flow_control

    def made() -> Any:
        consumer = new_consumer()
        conductor = consumer.callback
        race = consumer.wait_first  # mode's: tasks, against the flow's suspension and a stop
        suspended = consumer.suspend_flow
        turn_at = 0.0

        async def flowing() -> bool:
            """Whether a message handed over now is handled: False while a rebalance
            suspends the consumer's flow; flow control alone (recovery) is waited out."""
            if not suspended.is_set():
                await race(flow.acquire(), suspended.wait())
            return flow.is_active() and not suspended.is_set()

        async def on_message(message: Any) -> None:
            if (suspended.is_set() or not flow.is_active()) and not await flowing():
                return  # dropped, as faust's fetcher drops it: read again from the commit
            if message.topic not in topics:
                await race(conductor(message), suspended.wait())
                return
            consumer.track_message(message)
            await handle(message)
            consumer.ack(message)
            nonlocal turn_at
            if time.monotonic() >= turn_at:  # the loop's other tasks: timers, the commit
                await asyncio.sleep(0)
                turn_at = time.monotonic() + TURN_S

        async def wait_first(*coros: Any, timeout: float | None = None) -> WaitResults:
            """The fetcher's wait: ``on_message`` awaited to its end in the fetcher's task,
            anything else as mode waits."""
            first = coros[0]
            if getattr(first, "cr_code", None) is not on_message.__code__:
                return await race(*coros, timeout=timeout)
            for other in coros[1:]:  # the flow's suspension: not waited for
                if asyncio.iscoroutine(other):
                    other.close()
            return WaitResults([first], [await first], False)

        consumer.callback = on_message
        consumer.wait_first = wait_first
        return consumer

    app._new_consumer = made  # type: ignore[method-assign]
