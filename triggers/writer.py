"""What the triggers service writes to Kafka (firings and their tombstones, queued JS actions,
dead letters): acknowledged by all in-sync replicas, Kafka being away waited out, never a lost
firing. A record Kafka could never take is logged and counted, not retried: retrying it would
stop everything behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, MutableMapping

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from schemas.topics import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

KAFKA_RETRY_S = 1.0


class Writer:
    def __init__(self, bootstrap: str, topics: Mapping[str, str],
                 counts: MutableMapping[str, int]) -> None:
        """``topics``: a topic's name (``schemas.topics``) → its name in Kafka (prefixed)."""
        self.bootstrap = bootstrap
        self.topics = topics
        self.counts = counts
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          enable_idempotence=True,
                                          max_request_size=MAX_MESSAGE_BYTES)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send(self, name: str, key: bytes | None, value: bytes | None,
                   partition: int | None = None) -> None:
        """Write one record to the topic ``name`` (None: a tombstone), retrying until Kafka
        has it."""
        if self._producer is None:
            raise RuntimeError("the writer is not started")
        while True:
            try:
                await self._producer.send_and_wait(self.topics[name], value, key=key,
                                                   partition=partition)
                return
            except MessageSizeTooLargeError:  # never sendable: retrying would stop everything
                log.error("a %d-byte record for %s is more than Kafka takes; not written",
                          len(value or b""), self.topics[name])
                self.counts["too large"] += 1
                return
            except KafkaError as exc:
                log.warning("writing to %s failed (%s); retrying", self.topics[name], exc)
                await asyncio.sleep(KAFKA_RETRY_S)
