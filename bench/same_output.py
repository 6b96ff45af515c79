"""Is what the processors write and send byte for byte what revision REV's did, on the
benchmark's records? For refactorings and optimisations that must not change the output:

    .venv/bin/python bench/same_output.py REV [--records N]

Both trees' stages (``Stages`` over dicts, no Kafka) take the same envelopes of
``bench/processors.py``'s records; the digests of every day-log file and of every topic's
messages, in the order sent, are compared (table changelogs and the profiles topic are left
out: when a state is written depends on commits, not on what it holds). Exits 1 on a
difference, naming it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processors import PER_ENVELOPE, records, tree  # noqa: E402
from schemas import envelope  # noqa: E402
from schemas.partitioning import partition_for  # noqa: E402

PARTITIONS = 12
DIGEST = r'''
import asyncio, hashlib, json, pathlib, sys
sys.path[0] = str(pathlib.Path.cwd())
import msgpack
try:
    from processors.pipeline import Stages
    from runtime.settings import Settings
except ImportError:
    from processors.worker import Stages
    from trackpipe.settings import Settings
messages = msgpack.unpackb(pathlib.Path(sys.argv[1]).read_bytes())
data = pathlib.Path(sys.argv[2])
class Recorder:
    def __init__(self):
        self.digests = {}
    async def send(self, topic, partition, sent):
        if "changelog" in topic or topic.endswith(".profiles"):
            return
        digest = self.digests.setdefault(topic.split(".", 1)[1], hashlib.sha256())
        for key, value in sent:
            digest.update((key or b"") + b"\0" + (value or b"") + b"\n")
async def main():
    recorder = Recorder()
    stages = Stages(Settings(kafka_bootstrap="127.0.0.1:1", raw_partitions=12,
                             data_dir=data), recorder)
    offsets = {}
    for i, (partition, value) in enumerate(messages):
        offset = offsets.get(partition, 0)
        stages.visitors.handle_raw(partition, offset, value)
        offsets[partition] = offset + 1
        if i % 20 == 19:
            await stages.outbound.flush()
    await stages.outbound.flush()
    stages.close()
    found = {t: d.hexdigest() for t, d in sorted(recorder.digests.items())}
    for path in sorted((data / "logs").rglob("*.jsonl")):
        found[str(path.relative_to(data))] = hashlib.sha256(path.read_bytes()).hexdigest()
    print(json.dumps(found))
asyncio.run(main())
'''


def digests(root: Path, messages: Path, work: Path) -> dict[str, str]:
    data = Path(tempfile.mkdtemp(dir=work))
    done = subprocess.run([sys.executable, "-c", DIGEST, str(messages), str(data)], cwd=root,
                          capture_output=True, text=True, check=True, timeout=900)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev")
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trackpipe-same-"))
    filling: dict[int, list[bytes]] = {}
    messages = []
    for record in records(args.records):
        partition = partition_for(record.kafka_key(), PARTITIONS)
        items = filling.setdefault(partition, [])
        items.append(record.to_bytes())
        if len(items) == PER_ENVELOPE:
            messages.append((partition, envelope.pack(items)))
            filling[partition] = []
    messages += [(p, envelope.pack(items)) for p, items in filling.items() if items]
    dump = work / "messages.msgpack"
    dump.write_bytes(msgpack.packb(messages))
    with tree(args.rev) as then:
        before, now = digests(then, dump, work), digests(ROOT, dump, work)
    differing = sorted(name for name in before.keys() | now.keys()
                       if before.get(name) != now.get(name))
    print(f"{args.records} records, {len(messages)} envelopes: {len(now)} outputs compared "
          f"with {args.rev}: " + ("identical" if not differing else
                                  "different: " + ", ".join(differing)))
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
