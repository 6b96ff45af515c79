"""What the benchmarks need: a real Kafka (the configured one, else a local broker started
and stopped here), a scratch folder, and wrk for those that load a gateway."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trackpipe.kafka.launcher import LocalKafka, free_port_block


def require_wrk() -> None:
    """Stop with what to install when wrk, the load generator, is missing."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")


@contextlib.contextmanager
def bench_kafka() -> Iterator[tuple[str, Path, str]]:
    """(bootstrap servers, scratch folder, description of the broker for the report)."""
    work = Path(tempfile.mkdtemp(prefix="trackpipe-bench-"))
    bootstrap = os.environ.get("TRACKPIPE_KAFKA_BOOTSTRAP", "")
    kafka = None if bootstrap else LocalKafka(work / "kafka", port=free_port_block())
    # a benchmark stopped with SIGTERM (kill, timeout) stops its broker too, as on Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if kafka is not None:
            bootstrap = kafka.start()
        yield bootstrap, work, "local 1-node" if kafka else bootstrap
    except BaseException:
        print(f"the benchmark failed; its logs are kept in {work}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        if kafka is not None:
            kafka.stop()
