"""HTTP in, day logs and topics out: the gateway and two processor workers on a real broker,
the raw topic at 12 partitions (SPEC §3, §4, §5)."""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import msgpack
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from runtime.settings import Settings
from schemas import envelope
from schemas.raw import RawRecord
from tests.conftest import records
from tests.integration.pipeline import PROJECT, gateway_knows, metric, started_pipeline
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap, tmp_path_factory):
    with started_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("pipeline"),
                          workers=("worker-1", "worker-2")) as p:
        yield p


def visitor() -> str:
    return "c" + uuid.uuid4().hex[:10]


def test_anonymous_then_identified_is_one_profile(pipeline):
    """Another device owns the email already: the anonymous device's earlier action joins
    the person only through identity resolution (a merge of its profile into the owner's)."""
    owner_device, cookie, email = visitor(), visitor(), f"{visitor()}@example.com"
    owner = pipeline.by_id(pipeline.track(event="login", cookie=owner_device, cv_email=email)
                           .headers["x-event-id"])["profile"]
    pipeline.owns(f"email:{email}", owner)  # the owner's link lands first
    first = pipeline.by_id(pipeline.track(event="pv", cookie=cookie).headers["x-event-id"])
    pipeline.track(event="login", cookie=cookie, cv_email=email)
    merges = pipeline.topic("merges", lambda ms: any(m["source"] == first["profile"]
                                                     for m in ms))
    assert {m["into"] for m in merges if m["source"] == first["profile"]} == {owner}
    pipeline.rebound(cookie, owner)
    after = pipeline.by_id(pipeline.track(event="pv", cookie=cookie).headers["x-event-id"])
    assert first["profile"] != owner and after["profile"] == owner


def test_two_devices_one_email_are_one_profile_with_a_merge_record(pipeline):
    laptop, phone, email = visitor(), visitor(), f"{visitor()}@example.com"
    first = pipeline.track(event="login", cookie=laptop, cv_email=email).headers["x-event-id"]
    owner = pipeline.by_id(first)["profile"]
    pipeline.owns(f"email:{email}", owner)  # the link of the first device lands first
    anonymous = pipeline.track(event="pv", cookie=phone).headers["x-event-id"]
    phone_profile = pipeline.by_id(anonymous)["profile"]
    pipeline.track(event="login", cookie=phone, cv_email=email)
    merges = pipeline.topic("merges", lambda ms: any(m["source"] == phone_profile for m in ms))
    merge = next(m for m in merges if m["source"] == phone_profile)
    assert (merge["into"], merge["identifier"]) == (owner, f"email:{email}")
    pipeline.rebound(phone, owner)
    later = pipeline.track(event="pv", cookie=phone).headers["x-event-id"]
    assert pipeline.by_id(later)["profile"] == owner


def test_profile_lookup_follows_merges_from_any_worker(pipeline):
    laptop, phone, email = visitor(), visitor(), f"{visitor()}@example.com"
    owner = pipeline.by_id(pipeline.track(event="login", cookie=laptop, cv_email=email,
                                          cv_name="Rio").headers["x-event-id"])["profile"]
    pipeline.owns(f"email:{email}", owner)
    pipeline.by_id(pipeline.track(event="pv", cookie=phone).headers["x-event-id"])
    pipeline.by_id(pipeline.track(event="login", cookie=phone, cv_email=email,
                                  cv_plan="pro").headers["x-event-id"])

    def profiles() -> list[subprocess.CompletedProcess]:
        return [pipeline.profile(w, "--email", email.upper()) for w in ("worker-1", "worker-2")]

    def complete(answers: list[subprocess.CompletedProcess]) -> bool:
        return all(a.returncode == 0 and json.loads(a.stdout)["actions"] == 3 for a in answers)

    answers = wait_until(profiles, 30, lambda answers: [a.stderr for a in answers],
                         until=complete, every_s=0.5)  # (each probe runs two commands)
    shown = [json.loads(a.stdout) for a in answers]
    assert shown[0] == shown[1]
    profile = shown[0]
    assert sorted(profile["cookies"]) == sorted([laptop, phone])
    assert profile["emails"] == [email] and len(profile["merged_from"]) == 1
    assert profile["properties"] == {"email": email, "name": "Rio", "plan": "pro"}
    by_cookie = json.loads(pipeline.profile("worker-2", "--cookie", phone).stdout)
    assert by_cookie["profile"] == profile["profile"]
    unknown = pipeline.profile("worker-1", "--email", "nobody-here@example.com")
    assert unknown.returncode == 2 and "no profile" in unknown.stderr


def test_conflicting_ids_are_not_merged(pipeline):
    """Both ids' links are answered (each id is owned) before the merges topic is read to
    its end, so a merge of the two, had one been decided, would be in what is read."""
    laptop, phone, email = visitor(), visitor(), f"{visitor()}@example.com"  # a known merge
    owner = pipeline.by_id(pipeline.track(event="login", cookie=laptop, cv_email=email)
                           .headers["x-event-id"])["profile"]
    pipeline.owns(f"email:{email}", owner)
    marker = pipeline.by_id(pipeline.track(event="pv", cookie=phone).headers["x-event-id"])
    pipeline.track(event="login", cookie=phone, cv_email=email)
    pipeline.topic("merges", lambda ms: any(m["source"] == marker["profile"] for m in ms))
    shared = visitor()
    ids = [f"u1-{shared}", f"u2-{shared}"]
    one = pipeline.track(event="a", cookie=shared, cv_id=ids[0]).headers["x-event-id"]
    two = pipeline.track(event="b", cookie=shared, cv_id=ids[1]).headers["x-event-id"]
    p1, p2 = pipeline.by_id(one)["profile"], pipeline.by_id(two)["profile"]
    assert p1 != p2
    wait_until(lambda: all(pipeline.lookup("identity", f"id:{i}") for i in ids), 30,
               "the ids' links were never answered")
    pipeline.handled("raw", "links")  # what their handling sent is in Kafka
    merges = pipeline.read("merges")
    assert any(m["source"] == marker["profile"] for m in merges)  # what was read is real
    assert not any({m["source"], m["into"]} & {p1, p2} for m in merges)


def test_what_the_pipeline_writes_is_not_readable_by_other_users(pipeline):
    """Day logs, the journal, the spool hold personal data: no access for "other"."""
    pipeline.by_id(pipeline.track(event="private", cookie=visitor()).headers["x-event-id"])
    written = [p for p in pipeline.settings.data_dir.rglob("*")
               if p.is_file() and "kafka" not in p.parts]
    assert any(p.suffix == ".jsonl" for p in written) and any("spool" in p.parts
                                                              for p in written)
    readable = [p for p in written if p.stat().st_mode & 0o007]
    assert readable == []


def test_a_request_without_identifier_gets_an_assigned_cookie(pipeline):
    event_id = pipeline.track(event="anon").headers["x-event-id"]
    record = pipeline.by_id(event_id)
    assert record["cookie_assigned"] is True
    assert record["visitor_key"] == "cookie:tp" + event_id.replace("-", "")


def test_an_update_names_the_action_it_updates_and_unknown_ones_are_orphans(pipeline):
    cookie = visitor()
    page = pipeline.track(event="pv", cookie=cookie, idptnc="pg1").headers["x-event-id"]
    update = pipeline.track("/track/update", cookie=cookie, idptnc="pg1", duration="5000",
                            ce_scroll="80").headers["x-event-id"]
    orphan = pipeline.track("/track/update", cookie=cookie, idptnc="nope").headers["x-event-id"]
    record = pipeline.by_id(update)
    assert (record["type"], record["updates"], record["orphan"]) == ("update", page, False)
    assert record["builtins"]["duration"] == "5000" and record["properties"] == {"scroll": "80"}
    assert pipeline.by_id(orphan)["orphan"] is True


def test_campaign_from_utm(pipeline):
    event_id = pipeline.track(event="pv", cookie=visitor(),
                              ce_url="https://shop.example/?utm_source=news&utm_campaign=fall"
                              ).headers["x-event-id"]
    props = pipeline.by_id(event_id)["properties"]
    assert (props["campaign_source"], props["campaign_name"]) == ("news", "fall")


def test_a_visit_times_out_without_further_traffic(pipeline):
    cookie = visitor()
    pipeline.track(event="pv", cookie=cookie, timeout="1")  # seconds, like Android
    sent = time.monotonic()
    ended = pipeline.topic("visits", lambda vs: any(
        v["type"] == "visit ended" and v["visitor_key"] == f"cookie:{cookie}" for v in vs))
    waited = time.monotonic() - sent
    assert waited < 1 + 2 + 2  # timeout, tick interval, slack for reading the topic
    assert sum(v["visitor_key"] == f"cookie:{cookie}" and v["type"] == "visit ended"
               for v in ended) == 1


def test_pings_extend_the_visit(pipeline):
    cookie = visitor()
    pipeline.track(event="pv", cookie=cookie, timeout="2000")
    for _ in range(3):
        time.sleep(1)  # the time a ping keeps the visit open is what is tested: it must pass
        pipeline.track("/track/ping", cookie=cookie, timeout="2000")
    ended = pipeline.topic("visits", lambda vs: any(
        v["type"] == "visit ended" and v["visitor_key"] == f"cookie:{cookie}" for v in vs))
    visit = next(v for v in ended if v["type"] == "visit ended"
                 and v["visitor_key"] == f"cookie:{cookie}")
    assert visit["duration_ms"] >= 2900 and visit["actions"] == 1


def test_visits_open_when_their_worker_stops_are_ended_once_by_their_next_owner(pipeline):
    """worker-2 stops with visits open in its partitions: worker-1 takes the partitions, finds
    the open visits in the tables' stores (recovered from the changelogs, read a partition's
    database at a time) and ends each visit once."""
    cookies = [visitor() for _ in range(24)]  # some in worker-2's 6 partitions, surely
    keys = {f"cookie:{cookie}" for cookie in cookies}
    for cookie in cookies:
        pipeline.track(event="pv", cookie=cookie, timeout="8")
    pipeline.wait_logs(lambda ls: keys <= {r["visitor_key"] for r in ls})
    pipeline.stop("worker-2")

    def ended(visits):
        return [v["visitor_key"] for v in visits
                if v["type"] == "visit ended" and v["visitor_key"] in keys]

    assert not ended(pipeline.read("visits")), "ended before worker-2 stopped: none moved"
    try:
        found = pipeline.topic("visits", lambda vs: set(ended(vs)) == keys, timeout_s=60)
    finally:
        pipeline.start_worker("worker-2")
        pipeline.wait_ready("worker-2")
    assert set(Counter(ended(found)).values()) == {1}


def test_late_and_future_events_are_in_the_receipt_day_log_and_found_by_event_day(pipeline):
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    tomorrow = now + timedelta(days=1)
    late = pipeline.track(event="late", cookie=visitor(),
                          timestamp=int(yesterday.timestamp() * 1000)).headers["x-event-id"]
    early = pipeline.track(event="early", cookie=visitor(),
                           timestamp=int(tomorrow.timestamp() * 1000)).headers["x-event-id"]
    assert pipeline.by_id(late)["future"] is False and pipeline.by_id(early)["future"] is True
    day = yesterday.strftime("%Y-%m-%d")
    found = pipeline.logs(event_days={day}, days=[day])
    assert late in {r["id"] for r in found}
    day = tomorrow.strftime("%Y-%m-%d")
    assert early in {r["id"] for r in pipeline.logs(event_days={day}, days=[day])}


async def _produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(settings.topic("raw"), value, key=key)
    finally:
        await producer.stop()


def raw_record(cookie: str, event: str) -> RawRecord:
    event_id = str(uuid.uuid4())
    return RawRecord(id=event_id, received_ms=int(time.time() * 1000), endpoint="ce",
                     project=PROJECT, ip="192.0.2.1",
                     query=f"event={event}&cookie={cookie}".encode(),
                     visitor_key=f"cookie:{cookie}")


def test_a_duplicate_event_id_is_processed_once(pipeline):
    record = raw_record(visitor(), "twice")
    asyncio.run(_produce(pipeline.settings, [(record.kafka_key(), record.to_bytes())] * 2))
    after = raw_record(record.visitor_key.split(":")[1], "after")
    asyncio.run(_produce(pipeline.settings, [(after.kafka_key(), after.to_bytes())]))
    lines = pipeline.wait_logs(lambda ls: any(r["id"] == after.id for r in ls))
    assert [r["id"] for r in lines].count(record.id) == 1


def test_a_poison_record_goes_to_the_dead_letter_topic_and_its_partition_flows_on(pipeline):
    cookie = visitor()
    good = raw_record(cookie, "after-poison")
    escaping = msgspec.structs.replace(good, id=str(uuid.uuid4()), project="../etc")
    poison = [b"\xc1 not msgpack", msgpack.packb({"v": 99}), escaping.to_bytes()]
    asyncio.run(_produce(pipeline.settings, [(good.kafka_key(), value) for value in poison]
                         + [(good.kafka_key(), good.to_bytes())]))
    assert pipeline.by_id(good.id)["event"] == "after-poison"
    dead = pipeline.topic("deadletter", lambda ds: sum(
        d["kind"] == "record" and d["topic"].endswith("raw") and d["value"] is not None
        and base64.b64decode(d["value"]) in poison for d in ds) >= 3)
    errors = {base64.b64decode(d["value"]): d["error"] for d in dead if d["value"]}
    assert "not msgpack" in errors[poison[0]]
    assert "SchemaError" in errors[poison[1]] and "version" in errors[poison[1]]
    assert "project name" in errors[escaping.to_bytes()]
    assert all({"topic", "partition", "offset", "index"} <= set(d) for d in dead)
    assert not (pipeline.settings.data_dir / "etc").exists()


def test_logs_follow_prints_new_lines_as_they_are_written(pipeline):
    follower = subprocess.Popen(
        [sys.executable, "-m", "trackpipe.cli", "logs", PROJECT, "--follow"], env=pipeline.env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout])
    reader.start()
    there, printed = len(pipeline.logs()), []

    def printed_all() -> bool:
        while not lines.empty():
            printed.append(lines.get())
        return len(printed) >= there

    try:
        # it has printed what was there, so it is polling for more
        wait_until(printed_all, 30, lambda _: f"{len(printed)} of {there} lines printed")
        event_id = pipeline.track(event="followed", cookie=visitor()).headers["x-event-id"]

        def new_line_printed() -> bool:
            while not lines.empty():
                if json.loads(lines.get())["id"] == event_id:
                    return True
            return False

        wait_until(new_line_printed, 30, "the new line never came")
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        reader.join(timeout=10)  # EOF after the process ended
        follower.stdout.close()


def test_a_quota_of_5_gives_402_on_the_6th_action_and_raising_it_lifts_the_402(pipeline):
    from schemas.quota import QuotaState

    project = "quota.example"
    assert pipeline.cli("projects", "add", project, "--quota", "5").returncode == 0
    wait_until(lambda: gateway_knows(pipeline.settings, project, quota=5), 30,
               "the gateway never knew the project")
    ids = [pipeline.track(project=project, event=f"a{n}", cookie=visitor()).headers["x-event-id"]
           for n in range(5)]
    pipeline.topic("quota", lambda states: any(s.project == project and s.count >= 5
                                               and s.over for s in states),
                   decode=QuotaState.from_bytes)

    def sixth_action() -> httpx.Response:
        answer = pipeline.track(project=project, expect=None, event="a5", cookie=visitor(),
                                response="json")
        assert answer.status_code in (200, 402), answer.text
        return answer

    # the gateway follows the quota topic: the 402 comes once it has read the state above
    sixth = wait_until(sixth_action, 15, "the gateway never answered 402",
                       until=lambda answer: answer.status_code == 402)
    assert sixth.json()["success"] is False and "quota" in sixth.json()["message"]
    ids.append(sixth.headers["x-event-id"])
    lines = pipeline.wait_logs(lambda ls: {r["id"] for r in ls} >= set(ids), project=project)
    flags = {r["id"]: r["over_quota"] for r in lines}
    assert [flags[i] for i in ids] == [False] * 5 + [True]

    assert pipeline.cli("projects", "set", project, "--quota", "100").returncode == 0

    def poll() -> int:
        status = httpx.get(pipeline.url + "/track/ce",
                           params={"project": project, "event": "poll"}).status_code
        assert status in (200, 402), status
        return status

    wait_until(poll, 15, "raising the quota never lifted the 402",
               until=lambda status: status == 200, every_s=0.2)


def test_client_retries_through_a_gateway_killed_mid_request_are_logged_once(pipeline):
    """SDK-like clients send actions with client action ids (idptnc) and send again what got
    no answer; the gateway is killed with SIGKILL midway and started again. Each action is
    in the logs once, whether or not its first copy had reached Kafka."""
    sent: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        cookie = visitor()
        with httpx.Client(timeout=5) as http:
            for i in range(40):
                params = {"project": PROJECT, "event": "retried", "cookie": cookie,
                          "idptnc": f"{cookie}-{i}"}
                while True:
                    try:
                        r = http.get(pipeline.url + "/track/ce", params=params)
                        if r.status_code in (200, 202):
                            break
                    except httpx.TransportError:
                        pass  # no answer: the SDK sends the same action again
                    time.sleep(0.2)
                with lock:
                    sent.append(params["idptnc"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(sent) >= 80, 60, "the clients never sent 80 actions", every_s=0.01)
    pipeline.stop("gateway", signal.SIGKILL)
    pipeline.start("gateway", "gateway")
    for thread in threads:
        thread.join(timeout=120)
    assert len(sent) == 320
    lines = pipeline.wait_logs(lambda ls: set(sent) <= {
        r["builtins"].get("idptnc") for r in ls if r["event"] == "retried"}, timeout_s=120)
    logged = Counter(r["builtins"]["idptnc"] for r in lines if r["event"] == "retried")
    assert set(logged) == set(sent) and set(logged.values()) == {1}


def test_kill_9_of_a_busy_worker_loses_and_repeats_nothing(pipeline):
    """Many concurrent senders (so the gateway packs envelopes of many records), a worker
    killed while it works through a backlog, after it wrote day-log lines whose offsets faust
    had not committed yet: every event ends in the logs exactly once."""
    cookies = [visitor() for _ in range(60)]
    sent: list[str] = []
    lock = threading.Lock()

    def send(n: int, sender: int) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(n):
                r = client.get(pipeline.url + "/track/ce", params={
                    "project": PROJECT, "event": "stream",
                    "cookie": cookies[(sender * 7 + i) % len(cookies)]})
                assert r.status_code in (200, 202), r.text
                with lock:
                    sent.append(r.headers["x-event-id"])

    def burst(n: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=send, args=(n, k)) for k in range(16)]
        for thread in threads:
            thread.start()
        return threads

    before = len(pipeline.logs())
    first = burst(150)  # 2,400 requests
    wait_until(lambda: len(pipeline.logs()) >= before + 300, 60,  # busy with the backlog
               "nothing was logged", every_s=0.05)
    pipeline.stop("worker-2", signal.SIGKILL)
    for thread in first:
        thread.join()
    pipeline.start_worker("worker-2")
    second = burst(50)
    for thread in second:
        thread.join()
    pipeline.wait_ready("worker-2")
    lines = pipeline.wait_logs(lambda ls: set(sent) <= {r["id"] for r in ls}, timeout_s=180)
    counts = Counter(r["id"] for r in lines if r["id"] in set(sent))
    assert len(counts) == len(sent) and set(counts.values()) == {1}
    # the envelopes held many records, and some were read again after the kill with their
    # lines already written (the journal applied them again instead of deciding them anew)
    sizes = _envelope_sizes(pipeline.settings)
    assert max(sizes) > 1 and sum(sizes) >= len(sent)
    replayed = sum(metric(f"http://127.0.0.1:{pipeline.web_ports[worker]}",
                          "trackpipe_worker_replayed_envelopes_total")
                   for worker in ("worker-1", "worker-2"))
    assert replayed > 0


def _envelope_sizes(settings: Settings) -> list[int]:
    """The number of records of every envelope in the raw topic."""
    sizes: list[int] = []
    for message in asyncio.run(records(settings, "raw")):
        try:
            sizes.append(len(envelope.unpack(message.value)))
        except envelope.EnvelopeError:
            pass  # the poison test's message
    return sizes


def test_retention_removes_old_day_logs_of_its_project_and_nothing_else(pipeline):
    """A project kept 2 days: its day logs of ten days ago go (every partition's, whichever
    worker holds it), today's stay, and another project's old days are not touched."""
    logs = pipeline.settings.data_dir / "logs"
    old_day = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%d")
    kept = pipeline.by_id(pipeline.track(project=PROJECT, event="kept",
                                         cookie=visitor()).headers["x-event-id"])
    for project in ("short.example", PROJECT):
        for partition in range(pipeline.settings.raw_partitions):
            path = logs / project / old_day / f"part-{partition:03d}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"event": "old", "_source": {
                "partition": partition, "offset": 0}}) + "\n")
    # the files first: a worker applies a new retention at once, then hourly
    assert pipeline.cli("projects", "add", "short.example", "--retention-days", "2"
                        ).returncode == 0
    # the registry change is applied at the workers' next ticks (the shop keeps 365 days)
    wait_until(lambda: not (logs / "short.example" / old_day).exists(), 30,
               lambda _: sorted((logs / "short.example").rglob("*")))
    assert len(list((logs / PROJECT / old_day).glob("part-*.jsonl"))) == \
        pipeline.settings.raw_partitions
    assert kept["id"] in {r["id"] for r in pipeline.logs()}
