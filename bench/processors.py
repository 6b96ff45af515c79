"""Processor throughput against a bare consumer that only decodes the same records.

    make bench-processors     # or: .venv/bin/python bench/processors.py --records 20000 --runs 3

Each run produces N realistic raw records (pageviews of 5,000 visitors, 14 parameters) straight
to a fresh raw topic of 12 partitions, then measures

1. a bare aiokafka consumer (group-less, all partitions) that decodes every record with
   ``RawRecord.from_bytes`` and ``params()`` — the baseline;
2. one ``trackpipe worker`` process: from its "Ready" until every record is in the day logs
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
        while asyncio.run(_published(settings)) < n:  # one profile message per pageview here
            time.sleep(0.2)
        return logged, n / (time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _published(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        topic = settings.topic("profiles")
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in
                                           consumer.partitions_for_topic(topic) or ()])
        return sum(ends.values())
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
    bare, worker, profiled = [], [], []
    with bench_kafka() as (bootstrap, work, broker):
        for run in range(args.runs):
            settings = Settings(kafka_bootstrap=bootstrap, raw_partitions=12,
                                topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                                data_dir=work / f"run{run}")
            asyncio.run(create_topics(settings, bootstrap))
            asyncio.run(produce(settings, records(args.records)))
            bare.append(asyncio.run(bare_consumer(settings, args.records)))
            logged, published = worker_rate(settings, args.records, work)
            worker.append(logged)
            profiled.append(published)
            print(f"run {run + 1}: bare {bare[-1]:.0f}/s, worker {logged:.0f}/s "
                  f"(profiles {published:.0f}/s)", file=sys.stderr)
    b, w, pr = (statistics.median(rates) for rates in (bare, worker, profiled))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, Kafka {broker}; "
          f"{args.records} records, 12 partitions, median of {args.runs} runs\n")
    print("| consumer | records/s | ratio |")
    print("|---|---:|---:|")
    print(f"| bare aiokafka consumer, decode only | {b:.0f} | 1.00 |")
    print(f"| one trackpipe worker, raw → day logs (+ actions, visits, profiles) | {w:.0f} | "
          f"{w / b:.3f} |")
    print(f"| the same worker, until every profile is published | {pr:.0f} | {pr / b:.3f} |")


if __name__ == "__main__":
    main()
