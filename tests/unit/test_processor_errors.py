"""How the processors treat a failing record: a record's fault is a dead letter, transient
I/O is retried (the agent wiring is built, no broker is needed: handlers are called direct)."""

import pytest
from aiokafka.errors import KafkaConnectionError

import processors.app as app_module
from processors.app import Processors
from trackpipe.settings import Settings


class Message:
    topic, partition, offset, key, value = "t.raw", 0, 7, b"k", b"v"


@pytest.fixture
def processors(monkeypatch, tmp_path):
    made = Processors(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path),
                      "127.0.0.1:1", 6066)
    made.dead = []

    async def dead(message, exc):
        made.dead.append(exc)

    monkeypatch.setattr(made, "_dead", dead)
    monkeypatch.setattr(app_module, "RETRY_FIRST_S", 0.001)
    return made


@pytest.mark.parametrize("transient", [OSError("disk full"), KafkaConnectionError("down")],
                         ids=["disk", "kafka"])
async def test_transient_io_is_retried_until_it_succeeds(processors, transient):
    calls = []

    async def handle(message):
        calls.append(message)
        if len(calls) < 3:
            raise transient

    await processors._guarded(handle, Message())
    assert len(calls) == 3 and processors.dead == []


async def test_a_records_own_fault_is_a_dead_letter_at_once(processors):
    calls = []

    async def handle(message):
        calls.append(message)
        raise ValueError("not a record we can read")

    await processors._guarded(handle, Message())
    assert len(calls) == 1 and [str(e) for e in processors.dead] == ["not a record we can read"]
