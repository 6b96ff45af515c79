"""The sink stops the worker when the producer gives up on a message, and only then."""

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError

from processors.sink import EXIT_UNDELIVERED, Sink


class Producer:
    def __init__(self):
        self.sent, self.deliveries = [], []

    async def send(self, topic, value, key=None, partition=None):
        self.sent.append((topic, key, value, partition))
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]


class App:
    def __init__(self):
        self.producer = self
        self.aiokafka = Producer()

    def _ensure_producer(self):
        return self.aiokafka


@pytest.fixture
def sink():
    stops = []
    made = Sink(App(), stop=stops.append)
    made.stops = stops
    return made


async def test_a_delivered_message_goes_on(sink):
    await sink.send("t.actions", b"k", b"v", 3)
    sink.app.aiokafka.deliveries[0].set_result(None)
    await asyncio.sleep(0)
    assert sink.app.aiokafka.sent == [("t.actions", b"k", b"v", 3)] and sink.stops == []


async def test_an_undelivered_message_stops_the_worker(sink):
    await sink.send("t.actions", b"k", b"v")
    await sink.send("t.visits", b"k", b"w")
    sink.app.aiokafka.deliveries[0].set_result(None)
    sink.app.aiokafka.deliveries[1].set_exception(KafkaTimeoutError())
    await asyncio.sleep(0)
    assert sink.stops == [EXIT_UNDELIVERED]
