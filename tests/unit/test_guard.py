"""How a worker treats a failing message (processors.guard): transient I/O is retried, with
the one backoff its sends use too, a message's own fault is a dead letter at once."""

from itertools import islice

import pytest
from aiokafka.errors import KafkaConnectionError

from processors import outbound as outbound_module
from processors.guard import RETRY_FIRST_S, RETRY_MAX_S, backoff, guarded
from processors.outbound import Outbound


class Message:
    topic, partition, offset, key, value = "t.raw", 0, 7, b"k", b"v"


async def no_sleep(seconds):
    pass


@pytest.mark.parametrize("transient", [OSError("disk full"), KafkaConnectionError("down")],
                         ids=["disk", "kafka"])
async def test_transient_io_is_retried_until_it_succeeds(transient):
    calls, dead = [], []

    async def handle(message):
        calls.append(message)
        if len(calls) < 3:
            raise transient

    await guarded(handle, Message(), lambda m, e: dead.append(e), no_sleep)
    assert len(calls) == 3 and dead == []


async def test_a_messages_own_fault_is_a_dead_letter_at_once():
    calls, dead = [], []

    def handle(message):
        calls.append(message)
        raise ValueError("not a record we can read")

    await guarded(handle, Message(), lambda m, e: dead.append(str(e)), no_sleep)
    assert len(calls) == 1 and dead == ["not a record we can read"]


def test_the_waits_between_retries_double_from_the_first_to_the_most():
    assert list(islice(backoff(), 8)) == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert (RETRY_FIRST_S, RETRY_MAX_S) == (0.2, 5.0)


async def test_a_retried_message_waits_the_backoff_between_tries():
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    async def handle(message):
        if len(waits) < 7:
            raise KafkaConnectionError("down")

    await guarded(handle, Message(), lambda m, e: None, sleep)
    assert waits == list(islice(backoff(), 7))


async def test_the_outbound_retries_a_send_with_the_same_backoff(monkeypatch):
    """One home for the retry timings: the worker's sends wait as its handlers do."""
    waits, sent = [], []

    async def sleep(seconds):
        waits.append(seconds)

    class Transport:
        async def send(self, topic, partition, messages):
            if len(waits) < 7:
                raise KafkaConnectionError("down")
            sent.append((topic, partition, list(messages)))

    monkeypatch.setattr(outbound_module.asyncio, "sleep", sleep)
    outbound = Outbound(Transport(), {"actions": 1, "dl": 1}, "dl")
    outbound.message("actions", b"k", b"an action")
    await outbound.flush()
    assert waits == list(islice(backoff(), 7))
    assert sent == [("actions", 0, [(b"k", b"an action")])]
