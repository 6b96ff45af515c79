"""Processor throughput against a bare consumer that only decodes the same records.

    make bench-processors     # or: .venv/bin/python bench/processors.py --records 20000 --runs 3

Each run produces N realistic raw records (pageviews of 5,000 visitors, 11 parameters, each
visitor with a user agent drawn from ``tests/data/user_agents.tsv``'s 315 real ones by their
weights and an address of its own: public IPv4 and IPv6 of real blocks, one in ten private) to a
fresh raw topic of 12 partitions the way a gateway under load does: in envelopes of
``--per-envelope`` records of one partition (packed by ``schemas.envelope``, each record in
the partition its key hashes to; the default is what ``make bench-gateway`` measured at the
gateway's maximum rate). Then it measures, on the same messages:

1. a bare aiokafka consumer (group-less, all partitions) that decodes every record
   (``envelope.unpack``, ``RawRecord.from_obj``, ``params()``) — the baseline;
2. three floors of a faust worker: a faust agent that only iterates the same messages
   (``bench/faust_noop.py``), faust's consumer handing them straight to a no-op as the worker
   has them (``processors.direct``), and the worker's own handling of the envelopes in this process
   with no Kafka at all (``processors.worker.Stages``: parsing, rules, journal, day log; its
   messages are counted, not sent), with enrichment (user agents, locations) and without it,
   on the same envelopes, with the user-agent cache's hit rate;
3. one ``trackpipe worker`` process: from its "Ready" until every record is in the day logs,
   and until every profile is published with all its actions (the profiles stage runs in
   the same process, behind the visitors stage), and the Kafka messages it produced per raw
   record, counted from the end offsets of every topic.

Kafka is TRACKPIPE_KAFKA_BOOTSTRAP if set, else a local broker this script starts and stops.
Prints a Markdown table (medians of --runs) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

SPY = Path(sys.executable).with_name("py-spy")  # the venv's (the bench extra)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from bench import profile as profiling  # noqa: E402
from bench.common import bench_kafka  # noqa: E402
from logstore.layout import PARTS  # noqa: E402
from runtime.partition import read_topic  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.topics import create_topics  # noqa: E402
from schemas import envelope  # noqa: E402
from schemas.partitioning import partition_for  # noqa: E402
from schemas.raw import RawRecord  # noqa: E402
from trackpipe.kafka.launcher import free_port_block  # noqa: E402

PROJECT = "bench.example"
PER_ENVELOPE = 3  # records an envelope at the gateway's maximum rate (make bench-gateway)
PROFILE_HZ = 250


VISITORS = 5000
USER_AGENTS = ROOT / "tests" / "data" / "user_agents.tsv"
# blocks of real networks the IPv6 visitors come from (Google, Deutsche Telekom, Comcast, NTT)
V6_BLOCKS = (0x2A001450, 0x20030000, 0x26010000, 0x24040000)


def visitors(n: int = VISITORS) -> list[tuple[str, str]]:
    """Each visitor's user agent (drawn by the shipped mix's weights) and address (public
    IPv4 mostly, IPv6 from real blocks, one in ten private), the same in every run."""
    rows = [line.split("\t", 1) for line in USER_AGENTS.read_text().splitlines()
            if line and not line.startswith("#")]
    weights, uas = [int(w) for w, _ in rows], [ua for _, ua in rows]
    rng = random.Random(1)
    made = []
    for i in range(n):
        if i % 10 == 9:
            ip = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        elif i % 10 == 8:
            ip = str(ipaddress.IPv6Address(
                (rng.choice(V6_BLOCKS) << 96) | rng.getrandbits(96)))
        else:
            ip = f"{rng.choice((24, 31, 45, 62, 77, 81, 89, 92, 151, 176, 185, 212, 217))}" \
                 f".{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        made.append((rng.choices(uas, weights)[0], ip))
    return made


def records(n: int) -> list[RawRecord]:
    now = int(time.time() * 1000)
    who = visitors()
    made = []
    for i in range(n):
        cookie = f"ck{i % VISITORS}"
        user_agent, ip = who[i % VISITORS]
        query = (f"project={PROJECT}&event=pv&cookie={cookie}&timestamp={now + i}"
                 f"&ce_url=https%3A%2F%2Fshop.example%2Fp%2F{i % 500}%3Futm_source%3Dnews"
                 f"&ce_title=Product+{i % 500}&cv_name=Visitor+{i % VISITORS}&cs_landing=%2F"
                 "&screen=1920x1080&language=en-US&timeout=300000")
        made.append(RawRecord(id=str(uuid.uuid4()), received_ms=now + i, endpoint="ce",
                              project=PROJECT, ip=ip, user_agent=user_agent,
                              query=query.encode(), visitor_key=f"cookie:{cookie}"))
    return made


def envelopes(batch: list[RawRecord], partitions: int,
              per_envelope: int) -> list[tuple[int, bytes]]:
    """(partition, envelope) of ``per_envelope`` records each, every record in the partition
    its key hashes to, as a gateway under load makes them."""
    filling: dict[int, list[bytes]] = {}
    made = []
    for record in batch:
        partition = partition_for(record.kafka_key(), partitions)
        items = filling.setdefault(partition, [])
        items.append(record.to_bytes())
        if len(items) == per_envelope:
            made.append((partition, envelope.pack(items)))
            filling[partition] = []
    return made + [(p, envelope.pack(items)) for p, items in filling.items() if items]


async def produce(settings: Settings, batch: list[RawRecord], per_envelope: int) -> None:
    """``envelopes`` of the batch to the raw topic."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(settings.topic("raw"), value, partition=partition)
                   for partition, value in envelopes(batch, settings.raw_partitions,
                                                     per_envelope)]
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
                    for item in envelope.unpack(message.value):
                        RawRecord.from_obj(item).params()
                        seen += 1
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def faust_noop_rate(settings: Settings, messages: int, n: int, work: Path,
                    direct: bool = False) -> float:
    """Records/s of a faust agent that only iterates the raw messages; ``direct``: of
    faust's consumer handing them straight to a no-op (``processors.direct``)."""
    result = work / f"noop-{settings.topic_prefix}{int(direct)}.txt"
    subprocess.run([sys.executable, str(ROOT / "bench" / "faust_noop.py"),
                    settings.kafka_bootstrap, settings.topic("raw"), str(messages), str(result)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
                   check=True, env={**os.environ, "NOOP_LOOP": "uvloop",
                                    **({"NOOP_DIRECT": "1"} if direct else {})})
    return float(result.read_text()) * n / messages


def own_rate(root: Path, messages: list[tuple[int, bytes]], work: Path,
             *options: str) -> tuple[float, float, float]:
    """Records/s of the worker's own handling in the tree at ``root``, no Kafka
    (``bench/own.py``; ``--no-enrichment``: with nothing derived), the messages it makes a
    record and the user-agent cache's hit rate (-1: none)."""
    dump = work / "messages.msgpack"
    dump.write_bytes(msgpack.packb(messages))
    data = Path(tempfile.mkdtemp(dir=work))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "own.py"), str(dump), str(data),
                           *options], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=900, check=True)
    us, made, hit_rate = (float(x) for x in done.stdout.split())
    return 1e6 / us, made, hit_rate


def worker_rate(settings: Settings, n: int, work: Path, root: Path = ROOT,
                profile: Path | None = None) -> tuple[float, float, float]:
    """Records/s of a worker of the tree at ``root`` until all are in the day logs, and until
    every profile is published with all its actions; and the Kafka messages it produced per
    record. With ``profile``, py-spy samples the worker from its "Ready" until every profile
    is published into that file (``--format raw``)."""
    env = {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
           "TRACKPIPE_DATA_DIR": str(settings.data_dir),
           "TRACKPIPE_RAW_PARTITIONS": str(settings.raw_partitions), "PYTHONPATH": str(root)}
    log = work / f"worker-{settings.topic_prefix}log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "trackpipe.cli", "worker", "--web-port",
             str(free_port_block()), "--loglevel", "info"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    spy = None
    try:
        before = asyncio.run(_produced(settings))
        while b"[^Worker]: Ready" not in log.read_bytes():
            if process.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.05)
        if profile is not None:
            spy = subprocess.Popen([str(SPY), "record",
                                    "--pid", str(process.pid), "--rate", str(PROFILE_HZ),
                                    "--format", "raw", "--output", str(profile), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.perf_counter()
        logs = settings.data_dir / "logs" / PROJECT
        while sum(_lines(p) for p in logs.glob(f"*/{PARTS}")) < n:
            time.sleep(0.1)
        logged = n / (time.perf_counter() - started)
        asyncio.run(_wait_published(settings, n))
        published = n / (time.perf_counter() - started)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        time.sleep(settings.commit_interval_ms / 1000 + 1)  # the last state is written
        produced = asyncio.run(_produced(settings)) - before
        return logged, published, produced / n
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        process.terminate()
        process.wait(timeout=30)


async def _wait_published(settings: Settings, n: int) -> None:
    """Until the latest state of every profile on the profiles topic counts, together, all
    ``n`` actions (the topic holds each profile once per flush it changed in)."""
    consumer = AIOKafkaConsumer(settings.topic("profiles"),
                                bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        actions: dict[bytes, int] = {}
        while sum(actions.values()) < n:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for message in batch:
                    actions[message.key] = json.loads(message.value)["actions"]
    finally:
        await consumer.stop()


async def _produced(settings: Settings) -> int:
    """Messages in every topic of the run but the raw topic (what the worker produced)."""
    from schemas.topics import RAW, TOPICS

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(spec.name), p) for spec in TOPICS
               if spec.name != RAW for p in range(spec.partitions or settings.raw_partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


@contextlib.contextmanager
def tree(rev: str | None) -> Iterator[Path]:
    """This tree, or a checkout of ``rev`` beside it (a git worktree, removed afterwards)."""
    if rev is None:
        yield ROOT
        return
    folder = Path(tempfile.mkdtemp(prefix="trackpipe-baseline-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet",
                    str(folder), rev], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
                       check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--per-envelope", type=int, default=PER_ENVELOPE,
                        help="records an envelope (make bench-gateway: at the gateway's max "
                             "rate)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the worker of git revision REV, same records, "
                             "same run (e.g. the landed code before a change)")
    parser.add_argument("--profile", action="store_true",
                        help="sample each worker with py-spy and print where its CPU goes")
    args = parser.parse_args()
    if args.profile and not SPY.exists():
        sys.exit(f"{SPY} is not installed: pip install -e '.[bench]' (make profile-worker does)")
    kept = Path(tempfile.mkdtemp(prefix="trackpipe-profiles-")) if args.profile else None
    with tree(args.baseline) as baseline, bench_kafka() as (bootstrap, work, broker):
        trees = {"this tree": ROOT, **({args.baseline: baseline} if args.baseline else {})}
        rates: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
        samples: dict[str, Counter[str]] = {name: Counter() for name in trees}
        for run in range(args.runs):
            made = records(args.records)
            shared = {}
            for name, root in trees.items():
                settings = Settings(kafka_bootstrap=bootstrap, raw_partitions=12,
                                    topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                                    data_dir=work / f"run{run}-{len(shared)}")
                asyncio.run(create_topics(settings, bootstrap))
                asyncio.run(produce(settings, made, args.per_envelope))
                messages = asyncio.run(raw_messages(settings))
                if not shared:  # the baselines of the run: measured once
                    shared["bare"] = asyncio.run(bare_consumer(settings, args.records))
                    shared["noop"] = faust_noop_rate(settings, len(messages), args.records,
                                                     work)
                    shared["direct"] = faust_noop_rate(settings, len(messages), args.records,
                                                       work, direct=True)
                got = rates[name]
                for key in ("bare", "noop", "direct"):
                    got.setdefault(key, []).append(shared[key])
                # with and without enrichment, alternating, on the same envelopes
                bare_own, _, _ = own_rate(root, messages, work, "--no-enrichment")
                own, per_record, hit_rate = own_rate(root, messages, work)
                raw = kept / f"{name.replace(' ', '-')}-run{run + 1}.raw" if kept else None
                logged, published, produced = worker_rate(settings, args.records, work, root,
                                                          raw)
                if raw is not None and raw.exists():
                    samples[name] += profiling.shares(raw)
                for key, value in (("own", own), ("own_bare", bare_own),
                                   ("hit_rate", hit_rate), ("made", per_record),
                                   ("worker", logged),
                                   ("profiles", published), ("produced", produced)):
                    got.setdefault(key, []).append(value)
                print(f"run {run + 1}, {name}: " + ", ".join(
                    f"{key} {values[-1]:.2f}" for key, values in got.items()), file=sys.stderr)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, Kafka {broker}; {args.records} records in envelopes of "
          f"{args.per_envelope}, 12 partitions, median of {args.runs} runs (spread)")
    for name, got in rates.items():
        report(name, got)
    if args.baseline:
        now, then = ({k: statistics.median(v) for k, v in rates[n].items()} for n in trees)
        print(f"\n| this tree ÷ {args.baseline}, same runs | ratio |\n|---|---:|")
        print(f"| own handling, µs a record | {then['own'] / now['own']:.2f} |")
        print(f"| worker, raw → day logs, records/s | {now['worker'] / then['worker']:.2f} |")
        print(f"| worker, until every profile is published | "
              f"{now['profiles'] / then['profiles']:.2f} |")
    if args.profile:
        print(f"\nWhere each worker's CPU went (py-spy, {PROFILE_HZ} Hz, from its Ready until "
              f"every profile was published, all runs; samples in {kept}):\n")
        print(profiling.table({name: (samples[name], args.records * args.runs, PROFILE_HZ)
                               for name in trees}))


def report(name: str, got: dict[str, list[float]]) -> None:
    m = {key: statistics.median(values) for key, values in got.items()}
    spread = {key: f"{min(values):.0f}–{max(values):.0f}" for key, values in got.items()}
    b = m["bare"]
    print(f"\n{name}:\n")
    print("| consumer | records/s | spread | ratio |")
    print("|---|---:|---:|---:|")
    for key, text in (
            ("bare", "bare aiokafka consumer, decode only"),
            ("noop", "floor: a faust agent that only iterates the envelopes"),
            ("direct", "floor: faust's consumer handing them to a no-op (processors.direct)"),
            ("own", f"floor: the worker's own handling, no Kafka ({m['made']:.2f} messages "
                    "a record made, not sent)"),
            ("own_bare", "the same, without enrichment"),
            ("worker", "one trackpipe worker, raw → day logs"),
            ("profiles", "the same worker, until every profile is published")):
        print(f"| {text} | {m[key]:.0f} | {spread[key]} | {m[key] / b:.3f} |")
    if m["hit_rate"] >= 0:
        with_us, without_us = 1e6 / m["own"], 1e6 / m["own_bare"]
        print(f"\nEnrichment (user agents, locations), same envelopes, same runs: own handling "
              f"{without_us:.1f} µs a record without, {with_us:.1f} µs with: "
              f"+{with_us - without_us:.1f} µs, {100 * (with_us / without_us - 1):+.1f} %; "
              f"user-agent cache hit rate {100 * m['hit_rate']:.1f} %")
    print(f"\nKafka messages the worker produced per raw record, all topics: "
          f"{m['produced']:.2f} (runs {', '.join(f'{v:.2f}' for v in got['produced'])})")


async def raw_messages(settings: Settings) -> list[tuple[int, bytes]]:
    """The raw topic's messages as (partition, value), each partition's in offset order."""
    return [(m.partition, m.value) async for m in read_topic(
        settings.kafka_bootstrap, settings.topic("raw"), range(settings.raw_partitions))]


if __name__ == "__main__":
    main()
