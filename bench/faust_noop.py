"""A faust agent that only iterates the benchmark's raw records: what faust-streaming's own
per-record machinery allows on this machine, before any work; with ``NOOP_DIRECT=1``, the
same messages handed from faust's consumer straight to a no-op as the worker has them
(``processors.direct``). Run by bench/processors.py:

    python bench/faust_noop.py BOOTSTRAP TOPIC RECORDS RESULT_FILE   # writes records/s
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid

if os.environ.get("NOOP_LOOP"):
    import mode.loop

    mode.loop.use(os.environ["NOOP_LOOP"])
import faust  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from processors import direct  # noqa: E402


def main() -> None:
    bootstrap, topic, records, result = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = faust.App(f"noop{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                    store="memory://", processing_guarantee="at_least_once",
                    consumer_auto_offset_reset="earliest", web_enabled=False,
                    datadir=tempfile.mkdtemp(prefix="trackpipe-noop-"),
                    **({"cython_optimizations": True} if os.environ.get("NOOP_CYTHON") else {}))
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "started": 0.0}

    async def count(_message: object) -> None:
        if seen["n"] == 0:
            seen["started"] = time.perf_counter()
        seen["n"] += 1
        if seen["n"] == records:
            with open(result, "w") as out:
                out.write(str(records / (time.perf_counter() - seen["started"])))
            os._exit(0)

    @app.agent(source, concurrency=1)
    async def iterate(stream):  # noqa: ANN001 - faust's signature
        async for event in stream.events():
            await count(event.message)

    if os.environ.get("NOOP_DIRECT"):
        direct.install(app, count, {topic})

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
