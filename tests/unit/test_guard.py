"""How a worker treats a failing message (processors.guard): transient I/O is retried, with
the one backoff its sends use too, a message's own fault is a dead letter at once."""

from itertools import islice

import msgpack
import pytest
from aiokafka.errors import KafkaConnectionError

from processors import outbound as outbound_module
from processors.guard import RETRY_FIRST_S, RETRY_MAX_S, backoff, each_item, guarded
from processors.outbound import Outbound
from schemas import envelope


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


class Internal:
    topic, partition, offset, key = "t.links", 3, 9, b"k"
    value = envelope.pack([msgpack.packb(item) for item in ({"n": 1}, {"n": "bad"}, {"n": 3})])


def counting(handled):
    def handle(partition, item):
        if not isinstance(item["n"], int):
            raise TypeError("not a count")
        handled.append((partition, item["n"]))

    return handle


def test_an_internal_items_own_fault_is_its_own_dead_letter_and_the_rest_go_on():
    handled, dead = [], []
    each_item(Internal(), counting(handled), lambda m, e, i, item: dead.append((str(e), i, item)))
    assert handled == [(3, 1), (3, 3)]
    assert dead == [("not a count", 1, msgpack.packb({"n": "bad"}))]


@pytest.mark.parametrize("transient", [OSError("disk full"), KafkaConnectionError("down")],
                         ids=["disk", "kafka"])
async def test_transient_io_in_an_item_fails_the_message_for_the_guard_to_retry(transient):
    tries, dead = [], []

    def handle(partition, item):
        tries.append(item["n"])
        if len(tries) == 2:
            raise transient

    await guarded(lambda m: each_item(m, handle, lambda *a: dead.append(a)), Internal(),
                  lambda m, e: dead.append(e), no_sleep)
    assert tries == [1, "bad", 1, "bad", 3] and dead == []


def test_an_internal_message_that_is_no_envelope_is_the_messages_own_fault():
    class Broken(Internal):
        value = b"\xc1"

    with pytest.raises(envelope.EnvelopeError):
        each_item(Broken(), counting([]), lambda *a: None)


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
