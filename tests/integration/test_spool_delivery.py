"""The 202 path (SPEC §7): with the broker stopped, requests are spooled and answered 202;
once it is back, every one of them is in Kafka exactly once, also across a gateway restart."""

import asyncio
from collections import Counter

import httpx
import pytest

from gateway.main import Gateway
from runtime.topics import create_topics
from schemas.project import ProjectRecord
from tests.conftest import read_raw, register, started_kafka
from tests.waiting import wait_until_async

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def module_kafka(tmp_path_factory):
    """A broker of this module's own (started once: a start costs seconds), stopped by pid at
    the end."""
    with started_kafka(tmp_path_factory.mktemp("own-kafka")) as kafka:
        yield kafka


@pytest.fixture
def own_kafka(module_kafka):
    """The module's broker, which a test may stop and start: running when the test begins
    (started again if the test before left it stopped)."""
    module_kafka.start(timeout_s=120)
    return module_kafka


@pytest.fixture
async def outage_settings(own_kafka, settings_factory):
    settings = settings_factory(kafka_bootstrap=own_kafka.bootstrap, raw_partitions=3,
                                ack_deadline_ms=300)
    await create_topics(settings, settings.kafka_bootstrap)
    await register(settings, ProjectRecord.build("shop.example"))
    return settings


async def send(gw, n, tag):
    transport = httpx.ASGITransport(app=gw, client=("192.0.2.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=30) as c:
        replies = await asyncio.gather(*(
            c.get(f"/track/ce?project=shop.example&event={tag}&cookie=c{i % 7}&response=json")
            for i in range(n)))
    return [(r.status_code, r.headers["x-event-id"]) for r in replies]


async def test_outage_gives_202_and_every_record_lands_exactly_once(own_kafka, outage_settings):
    gw = Gateway(outage_settings, outage_settings.kafka_bootstrap)
    async with gw.running():
        await wait_until_async(lambda: all(gw.readiness().values()), 20, "never ready")
        before = await send(gw, 5, "before")
        await asyncio.to_thread(own_kafka.stop)
        during = await send(gw, 40, "during")
        assert gw.publisher.spool.depth == 40
        await asyncio.to_thread(own_kafka.start)
        await wait_until_async(lambda: gw.publisher.spool.depth == 0, 60,
                               "the spool was never drained")
    assert {status for status, _ in before} <= {200, 202}  # 202 only on a very loaded machine
    assert {status for status, _ in during} == {202}
    sent = [event_id for _, event_id in before + during]
    landed = Counter(rec.id for _, rec in await read_raw(outage_settings, len(sent)))
    assert set(landed) == set(sent) and set(landed.values()) == {1}


async def test_spooled_records_are_delivered_after_a_gateway_restart(own_kafka, outage_settings):
    first = Gateway(outage_settings, outage_settings.kafka_bootstrap)
    async with first.running():
        await wait_until_async(lambda: all(first.readiness().values()), 20, "never ready")
        await asyncio.to_thread(own_kafka.stop)
        during = await send(first, 25, "during")
    assert {status for status, _ in during} == {202}
    assert list((outage_settings.spool_dir / "slot-0").glob("*.seg"))

    await asyncio.to_thread(own_kafka.start)
    second = Gateway(outage_settings, outage_settings.kafka_bootstrap)
    async with second.running():
        await wait_until_async(lambda: second.publisher.connected
                               and second.publisher.spool.depth == 0, 60,
                               "the spool was never drained")
    landed = Counter(rec.id for _, rec in await read_raw(outage_settings, 25))
    assert set(landed) == {event_id for _, event_id in during}
    assert set(landed.values()) == {1}
    assert not list((outage_settings.spool_dir / "slot-0").glob("*.seg"))


async def test_a_slot_left_by_a_process_that_no_longer_runs_is_drained(outage_settings):
    """Fewer gateway processes than before: their slots still hold entries and no live
    process claims them; a running gateway adopts and drains them, exactly once."""
    import time as clock

    from gateway.spool import Spool
    from schemas.raw import RawRecord

    orphan = Spool(outage_settings.spool_dir / "slot-7", 10**6)
    orphan.open()
    records = [RawRecord(id=f"orphan-{n}", received_ms=int(clock.time() * 1000),
                         endpoint="ce", project="shop.example", ip="192.0.2.1",
                         query=b"event=left&cookie=c1", visitor_key="cookie:c1")
               for n in range(10)]
    for record in records:
        await orphan.append(record.kafka_key(), record.to_bytes())
    orphan.close()

    gw = Gateway(outage_settings, outage_settings.kafka_bootstrap)
    async with gw.running():
        await wait_until_async(
            lambda: not list((outage_settings.spool_dir / "slot-7").glob("*.seg")), 30,
            "the orphaned slot was never drained")
    landed = Counter(rec.id for _, rec in await read_raw(outage_settings, 10))
    assert landed == Counter({record.id: 1 for record in records})


async def test_a_gateway_restarted_during_an_outage_knows_its_projects_and_spools(
        own_kafka, outage_settings):
    first = Gateway(outage_settings, outage_settings.kafka_bootstrap)
    async with first.running():
        await wait_until_async(lambda: all(first.readiness().values()), 20, "never ready")
    snapshot_file = outage_settings.data_dir / "registry.snapshot"
    assert snapshot_file.exists() and snapshot_file.stat().st_mode & 0o077 == 0

    await asyncio.to_thread(own_kafka.stop)
    second = Gateway(outage_settings, outage_settings.kafka_bootstrap)
    async with second.running():
        assert second.readiness() == {"kafka": False, "registry": True}
        during = await send(second, 5, "restarted")
        assert {status for status, _ in during} == {202}
        await asyncio.to_thread(own_kafka.start)
        await wait_until_async(lambda: second.publisher.connected
                               and second.publisher.spool.depth == 0, 60,
                               "the spool was never drained")
    landed = Counter(rec.id for _, rec in await read_raw(outage_settings, 5))
    assert set(landed) == {event_id for _, event_id in during} and set(landed.values()) == {1}


def test_a_gateway_of_two_processes_killed_after_its_202s_delivers_them_on_restart(
        own_kafka, outage_settings, tmp_path):
    """`gateway --workers 2` (two processes, each its own spool slot) answers 202 during a
    broker outage and is killed with SIGKILL; started again as one process, it drains its own
    slot and adopts the other: every 202'd request lands in Kafka, once."""
    import os
    import signal
    import subprocess
    import sys

    from tests.integration.pipeline import free_port, metric, wait_status
    from tests.waiting import wait_until

    env = {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": own_kafka.bootstrap,
           "TRACKPIPE_TOPIC_PREFIX": outage_settings.topic_prefix,
           "TRACKPIPE_DATA_DIR": str(outage_settings.data_dir),
           "TRACKPIPE_RAW_PARTITIONS": "3", "TRACKPIPE_HTTP_PORT": str(free_port()),
           "TRACKPIPE_ACK_DEADLINE_MS": "300"}
    base = f"http://127.0.0.1:{env['TRACKPIPE_HTTP_PORT']}"
    url = base + "/track/ce?project=shop.example"

    def start(workers: int) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "trackpipe.cli", "gateway",
                                    "--workers", str(workers)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)  # its own group: killed whole
        wait_status(url + "&event=warm", 200, 60)
        return process

    first = start(2)
    try:
        own_kafka.stop()
        sent = []
        with httpx.Client(timeout=10) as client:
            for i in range(40):  # new connections: both processes take some
                r = client.get(url + f"&event=spooled&cookie=c{i}",
                               headers={"Connection": "close"})
                assert r.status_code == 202
                sent.append(r.headers["x-event-id"])
        slots = [d for d in (outage_settings.data_dir / "spool").glob("slot-*")
                 if any(d.glob("*.seg"))]
        assert len(slots) == 2  # both processes spooled
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    own_kafka.start()
    second = start(1)
    try:
        # what it delivers from the spools counts once Kafka acknowledged it, so the topic,
        # read to its end then, also holds anything it sent twice
        wait_until(lambda: metric(base, "trackpipe_gateway_spool_drained_total"), 60,
                   lambda drained: f"{drained:.0f} of {len(sent)} spooled records delivered",
                   until=lambda drained: drained >= len(sent), every_s=0.2)
        landed = Counter(rec.id for _, rec in asyncio.run(
            read_raw(outage_settings, len(sent) + 2, timeout_s=60)))
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(timeout=30)
    assert set(sent) <= set(landed) and {landed[i] for i in sent} == {1}
