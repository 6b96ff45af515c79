"""faust's consumer handing messages straight to the worker (processors.direct): the eager
``wait_first`` behaves as faust's for a callback that suspends, and makes no task for one that
does not; the callback tracks, handles and acks the stages' messages and leaves the others to
faust's conductor."""

import asyncio
from types import SimpleNamespace

import pytest
from mode import Service

from processors.direct import eager, install


async def never_called(*coros, timeout=None):
    raise AssertionError("a callback that did not suspend was raced in tasks")


async def test_a_callback_that_does_not_suspend_wins_at_once_without_tasks():
    done = asyncio.get_running_loop().create_future()
    done.set_result(7)

    async def callback():
        return await done  # awaits, but never waits

    coro = callback()
    got = await eager(never_called)(coro, asyncio.Event().wait())
    assert got.done == [coro] and got.results == [7] and not got.stopped


async def test_a_callback_that_suspends_is_finished_by_wait_first():
    ready, steps = asyncio.Event(), []

    async def callback():
        steps.append("before")
        await ready.wait()
        await asyncio.sleep(0)  # a bare yield too
        steps.append("after")
        return 5

    asyncio.get_running_loop().call_later(0.01, ready.set)
    got = await eager(Service().wait_first)(callback(), asyncio.Event().wait())
    assert got.results == [5] and steps == ["before", "after"]


async def test_the_flows_suspension_cancels_a_suspended_callback_where_it_waits():
    suspended, seen = asyncio.Event(), []

    async def callback():
        try:
            await asyncio.Event().wait()  # a lock that is never given
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append("handled")

    asyncio.get_running_loop().call_later(0.01, suspended.set)
    got = await eager(Service().wait_first)(callback(), suspended.wait())
    await asyncio.sleep(0)  # the loser's cancellation is delivered
    assert got.results == [True] and seen == ["cancelled"]


async def test_an_awaited_futures_exception_is_raised_where_the_callback_awaited_it():
    async def failing():
        await asyncio.sleep(0.001)
        raise OSError("disk")

    async def callback():
        try:
            await failing()
        except OSError as exc:
            return f"caught {exc}"

    got = await eager(Service().wait_first)(callback(), asyncio.Event().wait())
    assert got.results == ["caught disk"]


@pytest.mark.parametrize("suspends", [False, True], ids=["inline", "suspended"])
async def test_a_callbacks_exception_propagates(suspends):
    async def callback():
        if suspends:
            await asyncio.sleep(0.001)
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await eager(Service().wait_first)(callback(), asyncio.Event().wait())


class Consumer:
    def __init__(self):
        self.calls = []
        self.wait_first = Service().wait_first

    async def callback(self, message):
        self.calls.append(("conductor", message.topic))

    def track_message(self, message):
        self.calls.append(("track", message.offset))

    def ack(self, message):
        self.calls.append(("ack", message.offset))


class App:
    def __init__(self):
        self._consumer = None
        self.flow = asyncio.Event()
        self.flow.set()
        self.flow_control = SimpleNamespace(acquire=self.flow.wait)

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
        await consumer.wait_first(consumer.callback(message("t.raw", offset)),
                                  asyncio.Event().wait())
    await consumer.callback(message("t.__assignor-__leader", 0))
    assert consumer.calls == [("track", 3), ("handle", 3), ("ack", 3),
                              ("track", 4), ("handle", 4), ("ack", 4),
                              ("conductor", "t.__assignor-__leader")]


async def test_a_message_waits_for_flow_control_and_one_cancelled_is_not_acked():
    app = App()
    app.flow.clear()  # a rebalance suspended the flow
    handled = []

    async def handle(m):
        handled.append(m.offset)

    install(app, handle, {"t.raw"})
    consumer = app._new_consumer()
    suspended = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, suspended.set)
    await consumer.wait_first(consumer.callback(message("t.raw", 9)), suspended.wait())
    await asyncio.sleep(0)
    assert handled == [] and consumer.calls == []


def test_it_must_be_installed_before_the_consumer_is_made():
    app = App()
    app._consumer = Consumer()
    with pytest.raises(RuntimeError, match="consumer was made"):
        install(app, None, {"t.raw"})


async def test_handling_gives_the_loop_a_turn_every_few_milliseconds():
    """A backlog of messages that never suspend must not keep the commit and the timers
    from running."""
    import time

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
        await consumer.wait_first(consumer.callback(message("t.raw", offset)),
                                  asyncio.Event().wait())
    ticking.cancel()
    assert len(turns) >= 60 / 1000 / 0.005 / 2
