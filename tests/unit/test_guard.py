"""How a worker treats a failing message (processors.guard): transient I/O is retried, a
message's own fault is a dead letter at once."""

import pytest
from aiokafka.errors import KafkaConnectionError

from processors.guard import guarded


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
