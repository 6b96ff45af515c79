"""The worker's own handling of raw envelopes, no Kafka: CPU µs a record. Run as a script by
``bench/processors.py`` against this tree or an older one (``--baseline REV``), so that both
are measured on the same envelopes in the same run; and by ``bench/same_output.py``, which
compares what two trees write and send:

    python bench/own.py MESSAGES_FILE DATA_DIR           # µs a record, messages made, hit rate
    python bench/own.py MESSAGES_FILE DATA_DIR --no-enrichment  # the same, nothing derived
    python bench/own.py MESSAGES_FILE DATA_DIR --warm  # user agents parsed before timing
    python bench/own.py MESSAGES_FILE DATA_DIR --digest  # prints digests of the outputs

MESSAGES_FILE holds msgpack ``[[partition, envelope], ...]``. The stages run over dicts with a
transport that counts what they would send (flushed as the worker's 50 ms timer would, every
20 envelopes here, and committed once at the end, as a commit would).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

# Import the stages of the tree it runs in (its working directory), never bench/processors.py
# beside this script.
sys.path[0] = str(Path.cwd())


class Counting:
    """Counts the messages; with ``digest``, also a digest of each topic's, in the order
    sent (but the tables' changelogs and the profiles topic: when a state is written depends
    on commits, not on what it holds)."""

    def __init__(self, digest: bool = False) -> None:
        self.messages = 0
        self.digests: dict[str, Any] | None = {} if digest else None

    async def send(self, topic: str, partition: int, messages: list) -> None:
        self.messages += len(messages)
        if self.digests is None or "changelog" in topic or topic.endswith(".profiles"):
            return
        digest = self.digests.setdefault(topic.split(".", 1)[1], hashlib.sha256())
        for key, value in messages:
            digest.update((key or b"") + b"\0" + (value or b"") + b"\n")


async def measure(messages: list[tuple[int, bytes]], records: int, data_dir: Path,
                  counting: Counting, enrich: bool = True,
                  warm: bool = False) -> tuple[float, float, float]:
    """µs of CPU a record, messages made a record, and the user-agent cache's hit rate (-1:
    the tree has none). ``warm``: every user agent of the messages parsed before the clock
    starts, as in a worker that has run a while (its visitors' first requests still miss the
    cache of derived names, which is per user agent and address)."""
    try:  # this tree, or one from before processors.pipeline and the checkpoint
        from processors.pipeline import Stages
        from runtime.settings import Settings
    except ImportError:
        from trackpipe.settings import Settings  # type: ignore[no-redef]

        from processors.worker import Stages  # type: ignore[no-redef]
    options = {}
    try:  # a tree from before enrichment derives nothing either way
        from processors.enrichment import Enrichment
        if not enrich:
            options["enrichment"] = Enrichment.none()
    except ImportError:
        pass
    stages = Stages(Settings(kafka_bootstrap="127.0.0.1:1", raw_partitions=12,
                             data_dir=data_dir), counting, **options)
    if warm:
        from schemas.raw import decode_records
        for _, value in messages:
            for record in decode_records(value) or ():
                stages.enrichment.useragents.describe(record.user_agent)
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
    agents = getattr(getattr(stages, "enrichment", None), "useragents", None)
    hits, misses = agents.hit_rate() if agents is not None else (0, 0)
    stages.close()
    return (spent / records * 1e6, counting.messages / records,
            hits / (hits + misses) if hits + misses else -1.0)


def main() -> None:
    messages = [tuple(m) for m in msgpack.unpackb(Path(sys.argv[1]).read_bytes())]
    records = sum(len(msgpack.unpackb(value)) for _, value in messages)
    data = Path(sys.argv[2])
    counting = Counting(digest="--digest" in sys.argv[3:])
    us, made, hit_rate = asyncio.run(measure(messages, records, data, counting,
                                             enrich="--no-enrichment" not in sys.argv[3:],
                                             warm="--warm" in sys.argv[3:]))
    if counting.digests is None:
        print(f"{us:.3f} {made:.4f} {hit_rate:.4f}")
        return
    found = {topic: d.hexdigest() for topic, d in sorted(counting.digests.items())}
    for path in sorted((data / "logs").rglob("*.jsonl")):
        found[str(path.relative_to(data))] = hashlib.sha256(path.read_bytes()).hexdigest()
    print(json.dumps(found))


if __name__ == "__main__":
    main()
