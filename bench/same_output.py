"""Is what the processors write and send byte for byte what revision REV's did, on the
benchmark's records? For refactorings and optimisations that must not change the output:

    .venv/bin/python bench/same_output.py REV [--records N]

Both trees' stages (``bench/own.py --digest``: ``Stages`` over dicts, no Kafka) take the same
envelopes of ``bench/processors.py``'s records; the digests of every day-log file and of
every topic's messages, in the order sent, are compared. Exits 1 on a difference, naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processors import PER_ENVELOPE, envelopes, records, tree  # noqa: E402

PARTITIONS = 12
def digests(root: Path, messages: Path, work: Path) -> dict[str, str]:
    data = Path(tempfile.mkdtemp(dir=work))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "own.py"), str(messages),
                           str(data), "--digest"], cwd=root, env={**os.environ,
                                                                   "PYTHONPATH": str(root)},
                          capture_output=True, text=True, check=True, timeout=900)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev")
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trackpipe-same-"))
    messages = envelopes(records(args.records), PARTITIONS, PER_ENVELOPE)
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
