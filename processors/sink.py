"""Every message a worker writes, outputs and table changelogs alike, through one producer.

faust's ``Topic.send_soon`` and a table's ``__setitem__`` cost about 0.2 ms a message on this
machine (a faust agent that only iterates does 10,300 records/s, with one table write 3,200/s,
with one ``send_soon`` 3,100/s), about ten times aiokafka's own ``send`` (18-24 µs), and a
raw record makes several messages. So the worker sends through the aiokafka producer under
faust's own, and writes a table by setting its store and sending the changelog record itself:
the same topic, partition (the source record's, as faust does), raw key and JSON value that
faust would send and reads back when it recovers a table.

At-least-once holds as before: faust flushes this very producer before it commits offsets
(``Consumer.commit`` awaits ``producer.flush()``), so a record's messages are delivered
before its offset is committed. A message the producer gives up on (after its own retries)
stops the worker at once, before a commit can go past it: that is a crash the processors
are built to survive (the next owner of the partitions reads the records again from the last
commit and ``processors.outbox`` sends what they had sent), where going on would lose it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

EXIT_UNDELIVERED = 70  # EX_SOFTWARE


class Sink:
    def __init__(self, app: Any, stop: Callable[[int], Any] = os._exit) -> None:
        self.app = app
        self._stop = stop

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None = None) -> None:
        producer = self.app.producer._ensure_producer()  # the one faust flushes on commit
        delivery = await producer.send(topic, value, key=key, partition=partition)
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            log.critical("a message was not delivered, stopping the worker: %r",
                         delivery.exception())
            self._stop(EXIT_UNDELIVERED)
