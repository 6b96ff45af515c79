"""The scaled topology's throughput, in containers and as processes, measured the same way.

    .venv/bin/python bench/topology.py processes [--seconds 60]
    sh scripts/with-dockerd.sh .venv/bin/python bench/topology.py containers [--seconds 60]
    .venv/bin/python bench/topology.py node [--seconds 60] [--runs 3]

Both are 3 Kafka brokers (replication factor 3, min.insync.replicas 2), the default 12 raw
partitions, 2 gateways (300 ms acknowledgement deadline, the default), 3 workers and the
triggers service. `containers` is docker-compose.yml as `make test-compose` brings it up (the
images of `make images`; nginx in front of the gateways, 2 triggers services, Prometheus);
`processes` is the CLI's own roles on the host, as `make scale-demo` runs them, without nginx
(wrk loads each gateway with half the connections). wrk sends bench/track.lua's 14-parameter
pageviews of 50,000 visitors for --seconds over --connections (64); then the workers' record
counters (`trackpipe_worker_records_total`; in containers through Prometheus, which scrapes
every 5 s) are read until they hold every request answered 2xx. Prints one Markdown row a
run, with the rate the workers logged at (every accepted request over the time from wrk's start
until the last was logged) against the rate wrk sent at. `node` is one node's share of it: one
broker, one gateway and one worker as processes on the host, no triggers service.
Nothing is killed here: tests/compose and tests/integration/test_scale.py do that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import require_wrk  # noqa: E402
from runtime import registry  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.topics import create_topics  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.project import ProjectRecord  # noqa: E402

PROJECT = "bench.example"  # bench/track.lua's


def wrk(urls: list[str], seconds: int, connections: int) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx answers) of wrk over ``urls``, the connections shared."""
    runs = [subprocess.Popen(
        ["wrk", f"-t{max(1, 2 // len(urls))}", f"-c{connections // len(urls)}",
         f"-d{seconds}s", "-s", str(ROOT / "bench" / "track.lua"), url],
        stdout=subprocess.PIPE, text=True) for url in urls]
    rate = total = bad = 0
    for run in runs:
        out = run.communicate()[0]
        rate += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        total += int(re.search(r"(\d+) requests in", out).group(1))
        found = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        bad += int(found.group(1)) if found else 0
        errors = re.search(r"Socket errors: .*", out)
        if errors:
            print(f"wrk {errors.group(0)}", file=sys.stderr)
    return rate, total, bad


def records_of(text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("trackpipe_worker_records_total{"))


def spooled_of(text: str) -> float:
    """The 202s (queued on the gateway's disk, Kafka's acknowledgement later than 300 ms)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("trackpipe_gateway_requests_total{")
               and 'status="202"' in line)


def measure(urls: list[str], seconds: int, connections: int, logged, spooled) -> dict:
    """wrk on ``urls``, then ``logged()`` (records the workers processed) polled until it
    holds every 2xx answer; ``spooled()``: the gateways' 202s so far."""
    before, spooled_before = logged(), spooled()
    started = time.monotonic()
    rate, total, bad = wrk(urls, seconds, connections)
    sent_s = time.monotonic() - started
    accepted = total - bad
    deadline = time.monotonic() + 600
    while (done := logged() - before) < accepted:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done:.0f} of {accepted} records were processed")
        time.sleep(0.5)
    all_s = time.monotonic() - started
    return {"rate": rate, "total": total, "bad": bad, "sent_s": sent_s, "all_s": all_s,
            "logged_rate": accepted / all_s, "spooled": spooled() - spooled_before}


def processes(seconds: int, connections: int, brokers: int = 3, workers: int = 3,
              gateways: int = 2, triggers: bool = True) -> dict:
    from tests.conftest import started_kafka
    from tests.integration.pipeline import start_topology

    work = Path(tempfile.mkdtemp(prefix="trackpipe-topology-"))
    with started_kafka(work / "kafka", nodes=brokers, heap="512m") as kafka:
        settings = Settings(kafka_bootstrap=kafka.bootstrap, replication_factor=brokers,
                            data_dir=work / "data")
        asyncio.run(create_topics(settings, settings.kafka_bootstrap))
        asyncio.run(registry.write(settings.kafka_bootstrap, settings.topic(topics.PROJECTS),
                                   PROJECT, ProjectRecord.build(PROJECT)))
        p = start_topology(settings, work, tuple(f"worker-{i}" for i in range(1, workers + 1)),
                           gateways=gateways, triggers=triggers,
                           env={"TRACKPIPE_REPLICATION_FACTOR": str(brokers)})
        try:
            def logged() -> float:
                return sum(records_of(httpx.get(f"http://127.0.0.1:{port}/metrics",
                                                timeout=10).text)
                           for port in p.web_ports.values())

            def spooled() -> float:
                return sum(spooled_of(httpx.get(f"{url}/metrics", timeout=10).text)
                           for url in p.gateway_urls)

            return measure(p.gateway_urls, seconds, connections, logged, spooled)
        finally:
            p.stop_all()


def containers(seconds: int, connections: int) -> dict:
    from tests.compose.stack import Stack

    stack = Stack("trackpipe-topology-bench", ROOT / "build" / "topology-bench" / "compose.log")
    stack.compose("down", "--volumes", "--remove-orphans")
    try:
        stack.compose("up", "-d", "topics")
        topics_job = stack.containers("topics")[0]
        while stack.inspect(topics_job)["State"]["Running"]:
            time.sleep(0.5)
        stack.compose("run", "--rm", "--no-deps", "topics", "projects", "add", PROJECT)
        stack.compose("up", "-d", "--scale", "gateway=2", "--scale", "processors=3",
                      "--scale", "triggers=2")
        stack.wait_healthy(300)
        query = f"http://127.0.0.1:{stack.prometheus_port}/api/v1/query"

        def scalar(promql: str) -> float:
            answer = httpx.get(query, params={"query": promql}, timeout=10).json()
            return float(answer["data"]["result"][0]["value"][1]) if answer["data"][
                "result"] else 0.0

        # the count starts once Prometheus has scraped all three workers
        deadline = time.monotonic() + 120
        while scalar("count(trackpipe_worker_open_visits)") < 3:
            if time.monotonic() > deadline:
                raise SystemExit("Prometheus never scraped the three workers")
            time.sleep(1)
        return measure([stack.url], seconds, connections,
                       lambda: scalar("sum(trackpipe_worker_records_total)"),
                       lambda: scalar('sum(trackpipe_gateway_requests_total{status="202"})'))
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("processes", "containers", "node"))
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    require_wrk()
    os.chdir(ROOT)
    run = {"processes": processes, "containers": containers,
           "node": lambda *a: processes(*a, brokers=1, workers=1, gateways=1, triggers=False)
           }[args.mode]
    ratios = []
    for _ in range(args.runs):
        got = run(args.seconds, args.connections)
        ratios.append(got["logged_rate"] / got["rate"])
        print(f"| {args.mode} | {args.connections} | {got['rate']:,.0f} req/s "
              f"| {got['total']:,} ({got['bad']} non-2xx) "
              f"| {got['spooled'] / max(1, got['total'] - got['bad']):.0%} 202 "
              f"| {got['sent_s']:.0f} s | all processed after {got['all_s']:.0f} s | "
              f"{got['logged_rate']:,.0f} records/s ({ratios[-1]:.2f} of the rate sent) | "
              f"{platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')} |",
              flush=True)
    if args.runs > 1:
        print(f"median of {args.runs}: logged {statistics.median(ratios):.2f} of the rate sent")


if __name__ == "__main__":
    main()
