"""Gateway throughput against a bare ASGI app, in one run, on the same uvicorn settings.

    make bench-gateway            # or: .venv/bin/python bench/gateway.py --runs 3 --seconds 10

Both servers run as one uvicorn process (uvloop + httptools, no access log) on 127.0.0.1 and
are loaded by wrk (64 connections, 2 threads) with realistic 14-parameter /track/ce URLs. The
gateway publishes to a real Kafka: TRACKPIPE_KAFKA_BOOTSTRAP if set, else a local broker this
script starts and stops. Each measurement is the median of --runs runs. A last phase holds the
gateway at about half its own maximum rate (wrk's per-connection delay) and reports p99 and
the share of 202s there. Prints a Markdown table for docs/benchmarks.md.
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
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import bench_kafka, require_wrk  # noqa: E402
from runtime import registry  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.topics import create_topics  # noqa: E402
from schemas.project import ProjectRecord  # noqa: E402
from trackpipe.kafka.launcher import free_port_block  # noqa: E402

CONNECTIONS = 64


def serve(app: str, port: int, env: dict[str, str], factory: bool,
          http: str = "httptools") -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
               "--loop", "uvloop", "--http", http, "--no-access-log", "--no-proxy-headers",
               "--log-level", "warning"]
    if factory:
        command.append("--factory")
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{app} did not start")


def wrk(port: int, seconds: int, delay_ms: int = 0) -> dict[str, float]:
    env = {**os.environ, "BENCH_DELAY_MS": str(delay_ms)}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s",
         str(ROOT / "bench" / "track.lua"), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, env=env, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"rps": rps, "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%")}


def _latency(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def statuses(port: int) -> dict[int | str, float]:
    """Answers by status, and the envelope counters, from the gateway's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    found: dict[int | str, float] = {}
    for status, n in re.findall(r'requests_total\{endpoint="ce",status="(\d+)"\} (\d+)', text):
        found[int(status)] = found.get(int(status), 0) + float(n)
    for name in ("envelopes", "enveloped_records"):
        found[name] = float(re.search(rf"trackpipe_gateway_{name}_total (\d+)", text).group(1))
    return found


def median_run(port: int, runs: int, seconds: int, delay_ms: int = 0,
               metrics: bool = False) -> dict[str, float]:
    results = []
    for _ in range(runs):
        before = statuses(port) if metrics else {}
        result = wrk(port, seconds, delay_ms)
        if metrics:
            after = statuses(port)
            done = {s: after.get(s, 0) - before.get(s, 0) for s in after}
            envelopes = done.pop("envelopes") or 1
            result["per_envelope"] = done.pop("enveloped_records") / envelopes
            total = sum(done.values()) or 1
            result["share_202"] = done.get(202, 0) / total
            result["non_2xx"] = sum(n for s, n in done.items() if s >= 300)
        results.append(result)
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def measure(bootstrap: str, work: Path, args: argparse.Namespace) -> tuple:
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                        data_dir=work / "data")
    processes = []
    try:
        asyncio.run(create_topics(settings, bootstrap))
        asyncio.run(registry.write(bootstrap, settings.topic("projects"), "bench.example",
                                   ProjectRecord.build("bench.example")))
        env = {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": bootstrap,
               "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
               "TRACKPIPE_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(ROOT)}
        bare_port, null_port = free_port_block(), free_port_block()
        processes.append(serve("bench.bare_app:app", bare_port, env, factory=False))
        # both gateways with the protocol the gateway ships with (its limits: gateway.http)
        processes.append(serve("bench.null_gateway:create_app", null_port, env, factory=True,
                               http="gateway.http:GatewayProtocol"))
        gateways = {}
        for linger in args.lingers:
            port = free_port_block()
            processes.append(serve("gateway.main:create_app", port, {
                **env, "TRACKPIPE_ENVELOPE_LINGER_MS": str(linger),
                "TRACKPIPE_DATA_DIR": str(settings.data_dir / f"linger{linger}")},
                factory=True, http="gateway.http:GatewayProtocol"))
            gateways[linger] = port
        for port in (bare_port, null_port, *gateways.values()):
            wrk(port, 2)  # warm-up
        bare = median_run(bare_port, args.runs, args.seconds)
        null = median_run(null_port, args.runs, args.seconds)
        rows = {}
        for linger, port in gateways.items():
            top = median_run(port, args.runs, args.seconds, metrics=True)
            # Each connection waits delay_ms after an answer: rate ~ connections / (latency +
            # delay); the half rate is the first (no linger) gateway's, so rows compare.
            if not rows:
                delay_ms = max(1, round(CONNECTIONS * 1000 / (top["rps"] / 2) - top["p50_ms"]))
            half = median_run(port, args.runs, args.seconds, delay_ms=delay_ms, metrics=True)
            rows[linger] = (top, half)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
    return bare, null, rows, delay_ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--lingers", default="0", type=lambda text: [
        int(ms) for ms in text.split(",")],
                        help="TRACKPIPE_ENVELOPE_LINGER_MS values to compare, e.g. 0,2,5")
    args = parser.parse_args()
    require_wrk()

    with bench_kafka() as (bootstrap, work, broker):
        bare, null, rows, delay_ms = measure(bootstrap, work, args)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, Kafka at {broker}; "
          f"median of {args.runs} x {args.seconds}s, wrk -t2 -c{CONNECTIONS}\n")
    print("| server | req/s | p50 ms | p99 ms | 202 share | records an envelope "
          "| ratio to bare |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| bare ASGI app | {bare['rps']:.0f} | {bare['p50_ms']:.2f} | {bare['p99_ms']:.2f} "
          "| - | - | 1.00 |")
    print(f"| gateway HTTP path, Kafka replaced by a no-op | {null['rps']:.0f} | "
          f"{null['p50_ms']:.2f} | {null['p99_ms']:.2f} | - | - | "
          f"{null['rps'] / bare['rps']:.2f} |")
    for linger, (top, half) in rows.items():
        for name, row in ((f"gateway + Kafka (acks=all), linger {linger} ms, max rate", top),
                          (f"gateway + Kafka, linger {linger} ms, ~half rate "
                           f"(delay {delay_ms} ms)", half)):
            print(f"| {name} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                  f"{row['share_202']:.2%} | {row['per_envelope']:.1f} | "
                  f"{row['rps'] / bare['rps']:.2f} |")


if __name__ == "__main__":
    main()
