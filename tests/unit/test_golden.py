"""The processors' output, byte for byte, frozen: a refactoring or an optimisation of the
stages must not change one byte of what they write or send.

A fixed mix of requests (pageviews with campaigns, browser user agents and addresses with a
country or none, identifies that merge devices, updates of an action, pings, a future
timestamp, a duplicate event id, a record over its project's quota, a push's lines, a bad
record) goes through every stage of a simulated
worker (``tests.unit.simulation``); the digest of every topic partition, every day-log and
merges file and every journal is compared with ``tests/unit/golden.json``. A change that is
meant to change the output regenerates it (``TRACKPIPE_GOLDEN=write``) and says why in its
commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import msgpack

from logstore.layout import DAY
from runtime.settings import Settings
from schemas import envelope, topics
from schemas.partitioning import partition_for
from schemas.raw import RawRecord
from tests.unit.simulation import PARTITIONS, Log, SimulatedWorker

GOLDEN = Path(__file__).with_name("golden.json")
RECEIVED_MS = 1_800_000_000_000  # 2027-01-15
UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/126.0.0.0 Safari/537.36",
       "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
       "like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
       "Googlebot/2.1 (+http://www.google.com/bot.html)", ""]
# a quarter of the requests come from public addresses (a country each), the rest from a
# documentation range (no location)
PUBLIC = ["8.8.8.8", "1.0.16.1", "2001:4860:4860::8888", "193.0.6.139"]


def requests() -> list[RawRecord]:
    made: list[RawRecord] = []

    def add(endpoint: str, cookie: str | None, query: str, ua: int = 0, ms: int | None = None,
            over_quota: bool = False, event_id: str | None = None) -> None:
        n = len(made)
        made.append(RawRecord(
            id=event_id or f"00000000-0000-7000-8000-{n:012d}",
            received_ms=ms if ms is not None else RECEIVED_MS + n * 1000, endpoint=endpoint,
            project="shop.example", ip=PUBLIC[n % len(PUBLIC)] if n % 4 == 0
            else f"198.51.100.{n % 250}", user_agent=UAS[ua % len(UAS)],
            referer="https://search.example/?q=shoes" if n % 3 == 0 else "",
            language="de-DE,de;q=0.9" if n % 2 else "", over_quota=over_quota,
            query=query.encode(), visitor_key=f"cookie:{cookie}" if cookie else ""))

    for person in range(6):
        for device in range(1 + person % 3):
            cookie = f"c{person}-{device}"
            for page in range(4):
                add("ce", cookie, f"event=pv&cookie={cookie}&ce_url=https%3A%2F%2Fshop.example"
                    f"%2Fp%2F{page}%3Futm_source%3Dnews%26utm_campaign%3Dwinter&ce_title=P{page}"
                    f"&cs_landing=%2Fp%2F{page}&idptnc=a{page}&timeout=300000", ua=person)
            add("update", cookie, f"cookie={cookie}&idptnc=a3&duration=42")
            add("ping", cookie, f"cookie={cookie}")
            extra = f"&cv_id=u{person}" if device == person % 3 and person % 2 else ""
            add("identify", cookie, f"cookie={cookie}&cv_email=p{person}%40x.example"
                f"&cv_name=Person+{person}{extra}")
    add("ce", "c0-0", "event=buy&cookie=c0-0&ce_amount=129.5&timestamp=1900000000000")  # future
    add("ce", "c1-0", "event=pv&cookie=c1-0", event_id=made[5].id)  # a duplicate id
    add("ce", "c2-0", "event=pv&cookie=c2-0", over_quota=True)
    add("ce", None, "event=pv&ce_url=%2Fanonymous")  # no cookie: one is assigned
    for line in range(3):
        add("ce", "c3-0", f"event=push{line}&cookie=c3-0",
            event_id=f"00000000-0000-7000-8000-999999999999.{line + 1}")
    return made


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


async def outputs(tmp_path: Path) -> dict[str, str]:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path,
                        raw_partitions=PARTITIONS)
    log = Log()
    by_partition: dict[int, list[bytes]] = {}
    for record in requests():
        by_partition.setdefault(partition_for(record.kafka_key(), PARTITIONS), []).append(
            record.to_bytes())
    raw_topic = settings.topic(topics.RAW)
    for partition, items in sorted(by_partition.items()):
        for start in range(0, len(items), 5):
            log.append(raw_topic, partition, [(None, envelope.pack(items[start:start + 5]))])
    log.append(raw_topic, 0, [(None, msgpack.packb(["not", "an", "envelope"]))])
    worker = SimulatedWorker(settings, log)
    try:
        await worker.run()
    finally:
        worker.stages.close()
    found = {f"{topic}[{partition}]": digest(b"".join(
        (key or b"") + b"\0" + (value or b"") + b"\n" for key, value in messages))
        for (topic, partition), messages in sorted(log.topics.items())}
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path.suffix in (".jsonl", ".journal") or path.parent.name == "_index":
            name = str(path.relative_to(tmp_path))
            if path.name.startswith("merges-"):  # logged under the day they were decided
                name = "/".join("<day>" if DAY.fullmatch(p) else p for p in name.split("/"))
            found[name] = digest(path.read_bytes())
    return found


def test_the_processors_write_and_send_what_they_did_byte_for_byte(tmp_path):
    found = asyncio.run(outputs(tmp_path))
    if os.environ.get("TRACKPIPE_GOLDEN") == "write":
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    assert found == json.loads(GOLDEN.read_text())
