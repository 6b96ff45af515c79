"""faust's consumer handing messages straight to the worker (processors.direct): the fetcher
awaits the callback in its own task, with no race and no task for the stages' messages; the
callback tracks, handles and acks them, finishes one in hand when a rebalance suspends the flow
(faust's ``wait_empty`` waits for it), drops what it is handed while the flow is suspended, and
leaves the other topics' messages to faust's conductor."""

import asyncio
import time
from types import SimpleNamespace

import pytest
from mode import Service
from mode.utils.locks import Event
from mode.utils.queues import FlowControlEvent

from processors.direct import install


class Consumer:
    def __init__(self):
        self.calls = []
        self.wait_first = self.race
        self.suspend_flow = Event()
        self.service = Service()  # mode's waits end when it stops

    async def race(self, *coros, timeout=None):
        self.calls.append(("race",))
        return await self.service.wait_first(*coros, timeout=timeout)

    async def callback(self, message):
        self.calls.append(("conductor", message.topic))

    def track_message(self, message):
        self.calls.append(("track", message.offset))

    def ack(self, message):
        self.calls.append(("ack", message.offset))


class App:
    def __init__(self):
        self._consumer = None
        self.flow_control = FlowControlEvent(initially_suspended=False)

    def _new_consumer(self):
        return Consumer()


def message(topic, offset):
    return SimpleNamespace(topic=topic, offset=offset)


async def test_the_stages_messages_are_tracked_handled_and_acked_in_order():
    app = App()

    async def handle(m):
        consumer.calls.append(("handle", m.offset))

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    for offset in (3, 4):
        await fetched(consumer, offset)
    await fetched(consumer, 0, "t.__assignor-__leader")
    assert consumer.calls == [("track", 3), ("handle", 3), ("ack", 3),
                              ("track", 4), ("handle", 4), ("ack", 4),
                              ("race",), ("conductor", "t.__assignor-__leader")]


async def fetched(consumer, offset, topic="t.raw"):
    """What faust's fetcher does with a message: ``wait_first`` of the callback against the
    flow's suspension (bounded: a wrong wait fails the test instead of hanging it)."""
    async with asyncio.timeout(5):
        return await consumer.wait_first(consumer.callback(message(topic, offset)),
                                         consumer.suspend_flow.wait())


def rebalance_starts(app, consumer):
    consumer.suspend_flow.set()  # consumer.stop_flow()
    app.flow_control.suspend()


async def test_a_message_in_hand_when_a_rebalance_starts_is_handled_and_acked():
    """faust's wait_empty waits for the tracked message: cancelled, it would wait for ever."""
    app, lock = App(), asyncio.Event()

    async def handle(m):
        await lock.wait()  # a partition's lock, held by the worker finishing its revocation
        consumer.calls.append(("handle", m.offset))

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    drained = asyncio.ensure_future(fetched(consumer, 9))
    await asyncio.sleep(0.01)
    rebalance_starts(app, consumer)
    await asyncio.sleep(0.01)
    assert not drained.done() and consumer.calls == [("track", 9)]
    lock.set()
    await drained
    assert consumer.calls == [("track", 9), ("handle", 9), ("ack", 9)]


async def test_while_the_flow_is_suspended_a_message_is_dropped_untracked():
    app, handled = App(), []

    async def handle(m):
        handled.append(m.offset)

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    rebalance_starts(app, consumer)
    await fetched(consumer, 9)
    assert handled == [] and ("track", 9) not in consumer.calls


@pytest.mark.parametrize("alone", ["suspend_flow", "flow_control"])
async def test_either_half_of_a_suspension_drops_a_message(alone):
    """faust sets both together; either alone drops the message as faust's race would."""
    app, handled = App(), []

    async def handle(m):
        handled.append(m.offset)

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    if alone == "suspend_flow":
        consumer.suspend_flow.set()
    else:
        app.flow_control.suspend()
        asyncio.get_running_loop().call_later(0.01, consumer.service._stopped.set)  # a stop
    await fetched(consumer, 9)
    assert handled == [] and ("track", 9) not in consumer.calls


@pytest.mark.parametrize("then", ["resumed", "suspended"])
async def test_a_wait_for_flow_control_ends_when_it_resumes_or_the_flow_is_suspended(then):
    """Recovery holds flow control: the message waits for it, and is dropped if a rebalance
    suspends the consumer's flow meanwhile."""
    app, handled = App(), []

    async def handle(m):
        handled.append(m.offset)

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    app.flow_control.suspend()
    drained = asyncio.ensure_future(fetched(consumer, 9))
    await asyncio.sleep(0.01)
    assert not drained.done()
    if then == "resumed":
        app.flow_control.resume()
    else:
        consumer.suspend_flow.set()
    await drained
    assert handled == ([9] if then == "resumed" else [])


async def test_the_handler_runs_in_the_fetchers_task_with_no_race():
    """No task per message; and a handler's ``asyncio.timeout`` is bound to the task it runs
    in from start to end, so it times out the handler and not the fetcher."""
    app, tasks, outcomes = App(), [], []

    async def handle(m):
        tasks.append(asyncio.current_task())
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()  # a connection that never answers
        except TimeoutError:
            outcomes.append("timed out")
        tasks.append(asyncio.current_task())

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    got = await fetched(consumer, 3)
    assert tasks == [asyncio.current_task()] * 2 and outcomes == ["timed out"]
    assert got.results == [None] and not got.stopped
    assert ("race",) not in consumer.calls


async def test_a_handlers_exception_propagates_unacked():
    app = App()

    async def handle(m):
        await asyncio.sleep(0.001)
        raise ValueError("bug")

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    with pytest.raises(ValueError, match="bug"):
        await fetched(consumer, 3)
    assert consumer.calls == [("track", 3)]


async def test_other_waits_of_the_consumer_are_modes():
    app = App()
    install(app, None, {"t.raw"})
    consumer = app._new_consumer()
    ready = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, ready.set)
    got = await consumer.wait_first(ready.wait(), timeout=1)
    assert got.results == [True] and consumer.calls == [("race",)]


def test_it_must_be_installed_before_the_consumer_is_made():
    app = App()
    app._consumer = Consumer()
    with pytest.raises(RuntimeError, match="consumer was made"):
        install(app, None, {"t.raw"})


async def test_handling_gives_the_loop_a_turn_every_few_milliseconds():
    """A backlog of messages that never suspend must not keep the commit and the timers
    from running."""
    app, turns = App(), []

    async def handle(m):
        time.sleep(0.003)  # a few envelopes' work, without a suspension

    async def other_task():
        while True:
            turns.append(time.monotonic())
            await asyncio.sleep(0)

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    ticking = asyncio.ensure_future(other_task())
    await asyncio.sleep(0)
    turns.clear()
    for offset in range(20):  # 60 ms of handling
        await fetched(consumer, offset)
    ticking.cancel()
    assert len(turns) >= 60 / 1000 / 0.005 / 2
