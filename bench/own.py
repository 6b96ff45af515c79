"""The worker's own handling of raw envelopes, no Kafka: CPU µs a record. Run as a script by
``bench/processors.py`` against this tree or an older one (``--baseline REV``), so that both
are measured on the same envelopes in the same run:

    python bench/own.py MESSAGES_FILE DATA_DIR        # prints µs a record and messages made

MESSAGES_FILE holds msgpack ``[[partition, envelope], ...]``. The stages run over dicts with a
transport that counts what they would send (flushed as the worker's 50 ms timer would, every
20 envelopes here, and committed once at the end, as a commit would).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import msgpack

# Import the stages of the tree it runs in (its working directory), never bench/processors.py
# beside this script.
sys.path[0] = str(Path.cwd())


class Counting:
    def __init__(self) -> None:
        self.messages = 0

    async def send(self, topic: str, partition: int, messages: list) -> None:
        self.messages += len(messages)


async def measure(messages: list[tuple[int, bytes]], records: int, data_dir: Path
                  ) -> tuple[float, float]:
    try:  # this tree, or one from before processors.pipeline and the checkpoint
        from processors.pipeline import Stages
        from runtime.settings import Settings
    except ImportError:
        from trackpipe.settings import Settings  # type: ignore[no-redef]

        from processors.worker import Stages  # type: ignore[no-redef]
    counting = Counting()
    stages = Stages(Settings(kafka_bootstrap="127.0.0.1:1", raw_partitions=12,
                             data_dir=data_dir), counting)
    offsets: dict[int, int] = {}
    started = time.process_time()
    for i, (partition, value) in enumerate(messages):
        offset = offsets.get(partition, 0)
        stages.visitors.handle_raw(partition, offset, value)
        offsets[partition] = offset + 1
        if i % 20 == 19:
            await stages.outbound.flush()
    if hasattr(stages, "commit"):
        await stages.commit()
    else:
        await stages.outbound.flush(state=True)
    spent = time.process_time() - started
    stages.close()
    return spent / records * 1e6, counting.messages / records


def main() -> None:
    messages = [tuple(m) for m in msgpack.unpackb(Path(sys.argv[1]).read_bytes())]
    records = sum(len(msgpack.unpackb(value)) for _, value in messages)
    us, made = asyncio.run(measure(messages, records, Path(sys.argv[2])))
    print(f"{us:.3f} {made:.4f}")


if __name__ == "__main__":
    main()
