"""What enrichment adds to the worker's own handling of a record, with no Kafka:

    make bench-enrichment     # or: .venv/bin/python bench/enrichment.py --records 20000 --runs 7

The records of ``make bench-processors`` (5,000 visitors, each with a user agent of
``tests/data/user_agents.tsv``'s real mix and an address of its own) in envelopes of three,
handled by ``bench/own.py`` in a fresh process per run, three ways in turn so that a busy
machine slows each alike: with nothing derived, with enrichment from a cold start (the run
parses each of its few hundred distinct user agents once), and warm (every user agent parsed
before the clock starts, as in a worker that has run a while; each visitor's first request
still misses the cache of derived names, which is per user agent and address). CPU time of
the handling alone (``time.process_time``), medians and spread of the runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processors import PER_ENVELOPE, envelopes, records  # noqa: E402

PARTITIONS = 12
WAYS = {"nothing derived": ["--no-enrichment"], "enriched, cold": [],
        "enriched, warm": ["--warm"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trackpipe-enrichment-"))
    dump = work / "messages.msgpack"
    dump.write_bytes(msgpack.packb(envelopes(records(args.records), PARTITIONS, PER_ENVELOPE)))
    spent: dict[str, list[float]] = {way: [] for way in WAYS}
    for run in range(args.runs):
        for way, options in WAYS.items():
            done = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "own.py"), str(dump),
                 tempfile.mkdtemp(dir=work), *options],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                text=True, timeout=900, check=True)
            spent[way].append(float(done.stdout.split()[0]))
        print(f"run {run + 1}: " + ", ".join(f"{w} {v[-1]:.1f} µs" for w, v in spent.items()),
              flush=True)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {args.records} records, median of {args.runs} runs\n")
    base = statistics.median(spent["nothing derived"])
    print("| own handling | µs a record | spread | vs nothing derived |")
    print("|---|---:|---:|---:|")
    for way, values in spent.items():
        m = statistics.median(values)
        print(f"| {way} | {m:.1f} | {min(values):.1f}–{max(values):.1f} | "
              f"{100 * (m / base - 1):+.1f} % |")


if __name__ == "__main__":
    main()
