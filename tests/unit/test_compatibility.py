"""A worker of this code reads what a worker of the landed code wrote (commit ba28dad): its
journal entries, its tables' stored values (visitors, identities, profiles, counters) and its
day logs. ``fixtures/landed`` was written by that code from a few requests (a visit with a
campaign, a device seen with an email); a new worker completes a day log from the old
journal, byte for byte, and goes on from the old tables.
"""

import asyncio
import shutil
from pathlib import Path

import msgpack

from logstore.reading import read_lines
from processors.pipeline import STATE, Stages
from processors.stages.visitor import decode_visitor
from runtime.settings import Settings
from schemas import envelope
from schemas.raw import RawRecord

LANDED = Path(__file__).with_name("fixtures") / "landed"
DAY_LOG = Path("logs/shop.example/2027-01-15/part-000.jsonl")


class Recorder:
    def __init__(self):
        self.sent = []

    async def send(self, topic, partition, messages):
        self.sent += [(topic, key, value) for key, value in messages]


def restarted(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(LANDED / "data", data)
    stores = msgpack.unpackb((LANDED / "stores.msgpack").read_bytes())
    recorder = Recorder()
    return Stages(Settings(kafka_bootstrap="127.0.0.1:1", raw_partitions=4, data_dir=data),
                  recorder, {name: dict(stores[name]) for name in STATE}), recorder, data


def test_the_old_journal_completes_a_day_log_byte_for_byte(tmp_path):
    stages, recorder, data = restarted(tmp_path)
    old = (data / DAY_LOG).read_bytes()
    kept = b"".join(old.splitlines(keepends=True)[:3])  # a crash within the last envelope
    (data / DAY_LOG).write_bytes(kept)
    envelopes = msgpack.unpackb((LANDED / "raw.msgpack").read_bytes())
    assert stages.visitors.position(0) == 1  # completes the last entry's lines
    stages.visitors.handle_raw(0, 1, envelopes[1])  # read again: applied from the old entry
    asyncio.run(stages.outbound.flush())
    stages.close()
    assert (data / DAY_LOG).read_bytes() == old
    assert any(topic.endswith(".actions") for topic, _, _ in recorder.sent)


def test_the_old_tables_carry_on_a_visitors_visit_and_profile(tmp_path):
    stages, recorder, data = restarted(tmp_path)
    stores = msgpack.unpackb((LANDED / "stores.msgpack").read_bytes())
    visitor = decode_visitor(stores["visitors"][b"shop.example\ncookie:a"])
    assert visitor.visit is not None and visitor.state.email == "p@x.example"
    later = RawRecord(id="00000000-0000-7000-8000-000000000009",
                      received_ms=1_800_000_009_000, endpoint="ce", project="shop.example",
                      ip="192.0.2.1", query=b"event=buy&cookie=a", visitor_key="cookie:a")
    stages.visitors.handle_raw(0, 2, envelope.pack([later.to_bytes()]))
    stages.close()
    line = list(read_lines(data / "logs", "shop.example", ["2027-01-15"]))[-1]
    assert line["event"] == "buy" and line["visit"] == visitor.visit.id  # the same visit
    assert line["profile"] == visitor.state.profile
    for name, (_, decode) in STATE.items():  # every stored value of every table reads
        for value in stores[name].values():
            assert decode(value) is not None
