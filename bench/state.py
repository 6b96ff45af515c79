"""One worker's memory with a million distinct visitors, and how long a restart takes to
recover that state from the changelogs.

    make bench-state     # or: .venv/bin/python bench/state.py --visitors 1000000

Produces one pageview for each of N distinct visitors (envelopes of 3, as the gateway makes at
its maximum rate) to a fresh raw topic of 12 partitions, runs one ``trackpipe worker`` until
every record is in the day logs and its last state is committed, and reads its resident
memory (VmRSS). Then stops it (SIGTERM), starts a new worker on the same topics and data
folder, and reports the time from its start until faust says it is ready (its tables
recovered: the visitors changelog, the profiles topic, the others) and its memory then.
Kafka is TRACKPIPE_KAFKA_BOOTSTRAP if set, else a local broker this script starts and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import bench_kafka  # noqa: E402
from bench.processors import PER_ENVELOPE, PROJECT, _lines, produce  # noqa: E402
from logstore.layout import PARTS  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.topics import create_topics  # noqa: E402
from schemas.raw import RawRecord  # noqa: E402
from trackpipe.kafka.launcher import free_port_block  # noqa: E402


def distinct_visitors(start: int, count: int) -> list[RawRecord]:
    """One pageview each of the visitors numbered ``start`` to ``start + count - 1``."""
    now = int(time.time() * 1000)
    return [RawRecord(id=str(uuid.uuid4()), received_ms=now, endpoint="ce", project=PROJECT,
                      ip="192.0.2.1", user_agent="Mozilla/5.0",
                      query=(f"project={PROJECT}&event=pv&cookie=v{i}&ce_url=%2Fp%2F{i % 500}"
                             f"&cv_name=Visitor+{i}&timeout=300000").encode(),
                      visitor_key=f"cookie:v{i}") for i in range(start, start + count)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_worker(settings: Settings, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
           "TRACKPIPE_DATA_DIR": str(settings.data_dir),
           "TRACKPIPE_RAW_PARTITIONS": str(settings.raw_partitions), "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "trackpipe.cli", "worker",
                                 "--web-port", str(free_port_block()), "--loglevel", "info"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(process: subprocess.Popen, log: Path) -> None:
    while b"[^Worker]: Ready" not in log.read_bytes():
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--visitors", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.visitors
    with bench_kafka() as (bootstrap, work, broker):
        settings = Settings(kafka_bootstrap=bootstrap, raw_partitions=12,
                            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                            data_dir=work / "data")
        asyncio.run(create_topics(settings, bootstrap))
        for start in range(0, n, 100_000):  # in slices: a million records at once is gigabytes
            asyncio.run(produce(settings, distinct_visitors(start, min(100_000, n - start)),
                                PER_ENVELOPE))
        first = start_worker(settings, work / "first.log")
        started = time.perf_counter()
        wait_ready(first, work / "first.log")
        logs = settings.data_dir / "logs" / PROJECT
        while sum(_lines(p) for p in logs.glob(f"*/{PARTS}")) < n:
            time.sleep(1)
        processed_s = time.perf_counter() - started
        time.sleep(settings.commit_interval_ms / 1000 * 3)  # the last state is committed
        full = rss_mb(first.pid)
        first.terminate()
        first.wait(timeout=120)

        second = start_worker(settings, work / "second.log")
        started = time.perf_counter()
        wait_ready(second, work / "second.log")
        ready_s = time.perf_counter() - started
        recovered = rss_mb(second.pid)
        second.terminate()
        second.wait(timeout=120)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, Kafka {broker}; {n} distinct visitors, one pageview "
          f"each, envelopes of {PER_ENVELOPE}, 12 partitions, one run\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| one worker, all {n} records processed (records/s) | {n / processed_s:.0f} |")
    print(f"| its resident memory then | {full:.0f} MB |")
    print(f"| a restarted worker: start until ready (tables recovered) | {ready_s:.1f} s |")
    print(f"| its resident memory then | {recovered:.0f} MB |")


if __name__ == "__main__":
    main()
