"""What an operator sees of problems, end to end on a real broker: `trackpipe warnings` after
requests the pipeline changed or refused, `trackpipe deadletters` after a webhook that failed
and a record the worker could not handle, each re-sent once its cause is fixed, and the live
dashboard in headless Chromium showing them."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from schemas import envelope, topics
from schemas.deadletter import DeadLetter
from schemas.partitioning import partition_for
from schemas.raw import RawRecord
from tests.integration.browser import Values, number, render
from tests.integration.pipeline import PROJECT, free_port, started_pipeline
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers ``status`` (changed by a test)."""

    def __init__(self) -> None:
        self.status = 410
        self.calls: list[tuple[str, str, int]] = []  # (path, delivery id, status answered)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = receiver.status
                    receiver.calls.append((self.path, self.headers["X-Trackpipe-Delivery"],
                                           status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answered(self, status: int, path: str = "/hook") -> list[str]:
        with self.lock:
            return [delivery for at, delivery, answered in self.calls
                    if answered == status and at == path]


@pytest.fixture(scope="module")
def receiver():
    made = Receiver()
    yield made
    made.server.shutdown()
    made.server.server_close()


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap, tmp_path_factory, receiver):
    env = {"TRACKPIPE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",  # the receiver is on loopback
           "TRACKPIPE_WEBHOOK_ATTEMPTS": "1",
           "TRACKPIPE_TRIGGERS_WEB_PORT": str(free_port())}
    with started_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("operator"),
                          workers=("worker-1",), env=env, triggers=True) as p:
        done = p.cli("projects", "set", PROJECT, "--rotate-webhook-secret")
        assert done.returncode == 0, done.stderr
        yield p


def cli_json(pipeline, *args: str) -> dict:
    done = pipeline.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def listed(pipeline, until, *args: str, timeout_s: float = 60) -> dict:
    """The JSON of a view (`warnings …`, `deadletters …`) once ``until`` holds for it."""
    return wait_until(lambda: cli_json(pipeline, *args), timeout_s,
                      lambda last: f"{' '.join(args)} never matched; last: {last}",
                      until=until, every_s=0.5)


def test_warnings_list_what_was_changed_or_refused_newest_first_with_counts(pipeline):
    unknown = pipeline.track(expect=403, project="no-such.example", event="pv")
    replaced = pipeline.track(event="pv", cookie="w1", timestamp="soon")
    future = pipeline.track(event="pv", cookie="w1",
                            timestamp=int(time.time() * 1000) + 86_400_000)
    ids = [future.headers["x-event-id"], replaced.headers["x-event-id"]]
    kinds = ("--kind", "timestamp_replaced", "--kind", "timestamp_future")
    shown = listed(pipeline, lambda doc: len(doc["warnings"]) >= 2, "warnings", PROJECT, *kinds)
    assert [w["event_id"] for w in shown["warnings"]] == ids  # newest first
    assert [w["kind"] for w in shown["warnings"]] == ["timestamp_future", "timestamp_replaced"]
    assert shown["counts"] == {"timestamp_future": 1, "timestamp_replaced": 1}
    assert "timestamp=soon" in shown["warnings"][1]["sample"]
    assert all(w["project"] == PROJECT and w["service"] == "processors"
               for w in shown["warnings"])

    refused = listed(pipeline, lambda doc: doc["warnings"], "warnings", "no-such.example")
    assert [(w["kind"], w["event_id"], w["service"]) for w in refused["warnings"]] == [
        ("unknown_project", unknown.headers["x-event-id"], "gateway")]

    table = pipeline.cli("warnings", PROJECT, "--since", "10m", *kinds)
    assert table.returncode == 0, table.stderr
    assert "2 warnings of shop.example since" in table.stdout
    assert table.stdout.index(ids[0]) < table.stdout.index(ids[1])
    assert pipeline.cli("warnings", PROJECT, "--since", "0m", *kinds,
                        "--json").stdout.count("event_id") == 0  # none written after now


def failing_webhook(pipeline, receiver, name: str) -> str:
    """A trigger ``name`` whose webhook (``/<name>``) answers 410, and the first delivery it
    refused: an action is sent each second until one was (the triggers service may read the
    first ones before it knows the rule)."""
    receiver.status = 410
    added = pipeline.cli("triggers", "add", PROJECT, "--name", name, "--event", name,
                         "--webhook", f"{receiver.url}/{name}")
    assert added.returncode == 0, added.stderr
    sent_at = -1.0

    def failed() -> list[str]:
        nonlocal sent_at
        if time.monotonic() - sent_at > 1:
            pipeline.track(event=name, cookie="buyer")
            sent_at = time.monotonic()
        return receiver.answered(410, f"/{name}")

    return wait_until(failed, 60, "the webhook was never called", every_s=0.1)[0]


def test_a_failed_webhook_is_listed_with_its_reason_and_resent_once_fixed(pipeline, receiver):
    hook = receiver.url + "/hook"
    delivery = failing_webhook(pipeline, receiver, "hook")
    letters = listed(pipeline, lambda doc: any(delivery in row["what"] for row in doc["letters"]),
                     "deadletters", "--kind", "trigger", "--project", PROJECT)
    letter = next(row for row in letters["letters"] if delivery in row["what"])
    assert letter["reason"] == "HTTP 410 after 1 attempt(s)" and letter["resendable"]
    event_id = delivery.rsplit("/", 1)[0]
    listed(pipeline, lambda doc: event_id in [w["event_id"] for w in doc["warnings"]],
           "warnings", PROJECT, "--kind", "webhook_failed")

    receiver.status = 200  # the cause, fixed
    again = pipeline.cli("deadletters", "--resend", letter["id"])
    assert again.returncode == 0, again.stderr
    assert f"re-sent firing {delivery} to {hook}: delivered" in again.stdout
    assert delivery in receiver.answered(200)  # the same delivery id: receivers dedupe on it


def send_raw(pipeline, record: RawRecord) -> None:
    """A raw envelope of one record, as a gateway sends it."""
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.settings.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                pipeline.settings.topic(topics.RAW), envelope.pack([record.to_bytes()]),
                partition=partition_for(record.kafka_key(), pipeline.settings.raw_partitions))
        finally:
            await producer.stop()

    asyncio.run(send())


def raw_record(project: str = PROJECT, cookie: str = "resent") -> RawRecord:
    return RawRecord(id=str(uuid.uuid4()), received_ms=int(time.time() * 1000), endpoint="ce",
                     project=project, ip="192.0.2.1", query=f"event=pv&cookie={cookie}".encode(),
                     visitor_key=f"cookie:{cookie}")


def test_a_record_the_worker_dead_letters_is_listed_and_warned(pipeline):
    bad = raw_record(project="Not A Name!")  # no gateway sends it: the worker refuses it
    send_raw(pipeline, bad)
    letters = listed(pipeline, lambda doc: any(bad.id in row["what"] for row in doc["letters"]),
                     "deadletters", "--kind", "record")
    letter = next(row for row in letters["letters"] if bad.id in row["what"])
    assert "invalid project name" in letter["reason"] and letter["resendable"]
    listed(pipeline, lambda doc: bad.id in [w["event_id"] for w in doc["warnings"]],
           "warnings", "--kind", "dead_letter")


def test_a_raw_record_resent_is_logged_once_however_often_it_is_resent(pipeline):
    record = raw_record()
    letter = DeadLetter.for_record(ValueError("a bug since fixed"),
                                   pipeline.settings.topic(topics.RAW), 0, 5, None,
                                   record.to_bytes(), 0)

    async def write_letter() -> None:  # as a worker with that bug wrote it
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.settings.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(pipeline.settings.topic(topics.DEADLETTER),
                                         letter.to_json())
        finally:
            await producer.stop()

    asyncio.run(write_letter())
    letters = listed(pipeline,
                     lambda doc: any(record.id in row["what"] for row in doc["letters"]),
                     "deadletters", "--project", PROJECT, "--kind", "record")
    found = next(row for row in letters["letters"] if record.id in row["what"])
    for _ in range(2):
        again = pipeline.cli("deadletters", "--resend", found["id"])
        assert again.returncode == 0, again.stderr
        assert f"re-sent record {record.id} of {PROJECT}" in again.stdout
    pipeline.by_id(record.id)
    pipeline.handled(topics.RAW)  # both copies handled
    assert [line["id"] for line in pipeline.logs()].count(record.id) == 1


def test_what_cannot_be_resent_says_why(pipeline):
    refused = pipeline.cli("deadletters", "--resend", "0:999999999")
    assert refused.returncode == 1 and "no such letter" in refused.stderr


def test_the_dashboard_shows_refusals_dead_letters_and_warnings_over_its_history(
        pipeline, receiver, tmp_path):
    port = free_port()
    targets = [pipeline.url, f"http://127.0.0.1:{pipeline.web_ports['worker-1']}",
               f"http://127.0.0.1:{pipeline.env['TRACKPIPE_TRIGGERS_WEB_PORT']}"]
    pipeline.env.update({"TRACKPIPE_ADMIN_PORT": str(port),
                         "TRACKPIPE_METRICS_TARGETS": ",".join(targets)})
    pipeline.start("dashboard", "dashboard")
    url = f"http://127.0.0.1:{port}/"

    def api(path: str) -> dict:
        try:
            return httpx.get(url + path, timeout=10).json()
        except httpx.TransportError:
            return {}

    wait_until(lambda: api("api/summary").get("summary"), 60, "the dashboard never scraped",
               every_s=0.2)  # what comes next happens in its last minute
    unknown = pipeline.track(expect=403, project="typo.example").headers["x-event-id"]
    delivery = failing_webhook(pipeline, receiver, "dash")

    def shows_both(doc: dict) -> bool:
        summary = doc.get("summary") or {}
        minute = summary.get("last_minute") or {}
        kinds = {(w["kind"], w["event_id"]) for w in doc.get("warnings", [])}
        return (("unknown_project", unknown) in kinds
                and ("webhook_failed", delivery.rsplit("/", 1)[0]) in kinds
                and minute.get("dead_letters", 0) >= 1 and minute.get("webhook_failures", 0) >= 1
                and any(r["status"] == "403" and r["requests"] >= 1
                        for r in minute.get("rejections", []))
                and summary.get("processes", {}).get("triggers") == 1)

    wait_until(lambda: api("api/summary"), 60, lambda doc: f"the dashboard showed {doc}",
               until=shows_both, every_s=0.5)
    # the page opened now starts with what the dashboard held: more points than its own
    # polling could gather in Chromium's few seconds
    held = wait_until(lambda: len(api("api/history").get("history", [])), 60,
                      "the dashboard held no history", until=lambda n: n >= 15, every_s=0.5)
    page = render(url, tmp_path, "--dump-dom")
    assert page.returncode == 0, page.stderr[-2000:]
    shown = Values()
    shown.feed(page.stdout)
    values = shown.values
    assert unknown in values["warnings"] and "unknown_project" in values["warnings"]
    assert "webhook_failed" in values["warnings"] and "typo.example" in values["warnings"]
    assert number(values["dead-letters-per-min"]) >= 1
    assert number(values["webhook-failures-per-min"]) >= 1
    refused = re.search(r"403unknown project or excluded([\d,]+)", values["rejections"])
    assert refused and number(refused.group(1)) >= 1, values["rejections"]
    assert "1 triggers service(s)" in values["processes"]
    chart = re.search(r'<canvas id="chart"[^>]*>', page.stdout).group()
    points = int(re.search(r'data-points="(\d+)"', chart).group(1))
    assert points >= held - 5 and points >= 10, chart  # the history, not an empty frame
    assert "events per second from " in chart  # its axes: time and rate, said in words too
    shot = tmp_path / "dashboard-problems.png"
    done = render(url, tmp_path, f"--screenshot={shot}", "--window-size=1400,1200")
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
    (ROOT / "artifacts").mkdir(exist_ok=True)
    shutil.copy(shot, ROOT / "artifacts" / "dashboard-problems.png")
