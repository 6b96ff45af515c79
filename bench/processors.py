"""Processor throughput against a bare consumer that only decodes the same records.

    make bench-processors     # or: .venv/bin/python bench/processors.py --records 20000 --runs 3

Each run produces N realistic raw records (pageviews of 5,000 visitors, 14 parameters) straight
to a fresh raw topic of 12 partitions, then measures

1. a bare aiokafka consumer (group-less, all partitions) that decodes every record with
   ``RawRecord.from_bytes`` and ``params()`` — the baseline;
2. two floors of a faust worker: a faust agent that only iterates the same records
   (``bench/faust_noop.py``), and the worker's own handling of each record in this process
   with no Kafka at all (parsing, rules, day log, outbox; its messages are counted, not sent);
3. one ``trackpipe worker`` process: from its "Ready" until every record is in the day logs
   (the issue's measure), and until every record's profile update is applied and published
   to the ``profiles`` topic (the profiles stage runs in the same process, a little behind).

Kafka is TRACKPIPE_KAFKA_BOOTSTRAP if set, else a local broker this script starts and stops.
Prints a Markdown table (medians of --runs) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from bench.common import bench_kafka  # noqa: E402
from schemas.raw import RawRecord  # noqa: E402
from trackpipe.kafka.launcher import free_port_block  # noqa: E402
from trackpipe.settings import Settings  # noqa: E402
from trackpipe.topics import create_topics  # noqa: E402

PROJECT = "bench.example"


def records(n: int) -> list[RawRecord]:
    now = int(time.time() * 1000)
    made = []
    for i in range(n):
        cookie = f"ck{i % 5000}"
        query = (f"project={PROJECT}&event=pv&cookie={cookie}&timestamp={now + i}"
                 f"&ce_url=https%3A%2F%2Fshop.example%2Fp%2F{i % 500}%3Futm_source%3Dnews"
                 f"&ce_title=Product+{i % 500}&cv_name=Visitor+{i % 5000}&cs_landing=%2F"
                 "&browser=Chrome&os=Mac+OS+X&device=desktop&screen=1920x1080"
                 "&language=en-US&timeout=300000")
        made.append(RawRecord(id=str(uuid.uuid4()), received_ms=now + i, endpoint="ce",
                              project=PROJECT, ip="192.0.2.1", user_agent="Mozilla/5.0",
                              query=query.encode(), visitor_key=f"cookie:{cookie}"))
    return made


async def produce(settings: Settings, batch: list[RawRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(settings.topic("raw"), r.to_bytes(), key=r.kafka_key())
                   for r in batch]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def bare_consumer(settings: Settings, n: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic("raw"), p) for p in range(settings.raw_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < n:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for message in batch:
                    RawRecord.from_bytes(message.value).params()
                    seen += 1
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def faust_noop_rate(settings: Settings, n: int, work: Path) -> float:
    result = work / f"noop-{settings.topic_prefix}txt"
    subprocess.run([sys.executable, str(ROOT / "bench" / "faust_noop.py"),
                    settings.kafka_bootstrap, settings.topic("raw"), str(n), str(result)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
                   check=True)
    return float(result.read_text())


class _Message:  # what the handlers read of a faust message
    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes):
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value = key, value


async def own_rate(settings: Settings, batch: list[RawRecord]) -> tuple[float, float]:
    """Records/s of the worker's own handling, no Kafka; and messages it makes per record."""
    from processors.app import Processors

    processors = Processors(settings, settings.kafka_bootstrap, 6066)  # never started
    offsets = [0] * settings.raw_partitions
    messages = []
    for i, record in enumerate(batch):
        partition = i % settings.raw_partitions
        messages.append(_Message(processors.raw_topic, partition, offsets[partition],
                                 record.kafka_key(), record.to_bytes()))
        offsets[partition] += 1
    made = 0

    async def count(outputs: list, message: _Message) -> None:
        nonlocal made
        made += len(outputs)

    processors._send = count
    started = time.perf_counter()
    for message in messages:
        await processors._guarded(processors._raw, message)
    rate = len(batch) / (time.perf_counter() - started)
    processors.daylog.close()
    return rate, made / len(batch)


def worker_rate(settings: Settings, n: int, work: Path) -> tuple[float, float]:
    """Records/s until all are in the day logs, and until all their profiles are out."""
    env = {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
           "TRACKPIPE_DATA_DIR": str(settings.data_dir),
           "TRACKPIPE_RAW_PARTITIONS": str(settings.raw_partitions), "PYTHONPATH": str(ROOT)}
    log = work / f"worker-{settings.topic_prefix}log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "trackpipe.cli", "worker", "--web-port",
             str(free_port_block()), "--loglevel", "info"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while b"[^Worker]: Ready" not in log.read_bytes():
            if process.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.05)
        started = time.perf_counter()
        logs = settings.data_dir / "logs" / PROJECT
        while sum(_lines(p) for p in logs.glob("*/part-*.jsonl")) < n:
            time.sleep(0.2)
        logged = n / (time.perf_counter() - started)
        asyncio.run(_wait_published(settings, n))
        return logged, n / (time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _wait_published(settings: Settings, n: int) -> None:
    """Until the profiles topic holds ``n`` messages (one a pageview here: no merges)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        topic = settings.topic("profiles")
        tps = [TopicPartition(topic, p) for p in range(settings.raw_partitions)]
        while sum((await consumer.end_offsets(tps)).values()) < n:
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bare, noop, own, worker, profiled = [], [], [], [], []
    per_record = 0.0
    with bench_kafka() as (bootstrap, work, broker):
        for run in range(args.runs):
            settings = Settings(kafka_bootstrap=bootstrap, raw_partitions=12,
                                topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                                data_dir=work / f"run{run}")
            asyncio.run(create_topics(settings, bootstrap))
            made = records(args.records)
            asyncio.run(produce(settings, made))
            bare.append(asyncio.run(bare_consumer(settings, args.records)))
            noop.append(faust_noop_rate(settings, args.records, work))
            rate, per_record = asyncio.run(own_rate(
                replace(settings, data_dir=work / f"own{run}"), made))
            own.append(rate)
            logged, published = worker_rate(settings, args.records, work)
            worker.append(logged)
            profiled.append(published)
            print(f"run {run + 1}: bare {bare[-1]:.0f}/s, faust no-op {noop[-1]:.0f}/s, own "
                  f"handling {own[-1]:.0f}/s, worker {logged:.0f}/s (profiles "
                  f"{published:.0f}/s)", file=sys.stderr)
    b, n, o, w, pr = (statistics.median(rates) for rates in (bare, noop, own, worker, profiled))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, Kafka {broker}; "
          f"{args.records} records, 12 partitions, median of {args.runs} runs\n")
    print("| consumer | records/s | ratio |")
    print("|---|---:|---:|")
    print(f"| bare aiokafka consumer, decode only | {b:.0f} | 1.00 |")
    print(f"| floor: a faust agent that only iterates | {n:.0f} | {n / b:.3f} |")
    print(f"| floor: the worker's own handling, no Kafka ({per_record:.1f} messages a "
          f"record made, not sent) | {o:.0f} | {o / b:.3f} |")
    print(f"| one trackpipe worker, raw → day logs (+ actions, visits, profiles) | {w:.0f} | "
          f"{w / b:.3f} |")
    print(f"| the same worker, until every profile is published | {pr:.0f} | {pr / b:.3f} |")


if __name__ == "__main__":
    main()
