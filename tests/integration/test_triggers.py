"""Triggers end to end (SPEC §8): HTTP in, through the processors and the actions topic, to a
local webhook receiver and the visitor's next script response; a real broker throughout."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from runtime import registry
from schemas import topics
from schemas.project import ProjectRecord
from schemas.trigger import TriggerRule
from tests.conftest import register
from tests.integration.pipeline import PROJECT, free_port, gateway_knows, started_pipeline
from tests.waiting import wait_until
from triggers import rules

pytestmark = pytest.mark.integration

SECRET = "hook-s3cret"
WORKER_TOKEN = "worker-t0ken-for-tests"
SIGNED = "signed.example"


class Receiver:
    """A webhook receiver on 127.0.0.1: ``/ok/*`` answers 200, ``/flaky/*`` fails a
    delivery's first three attempts, ``/down/*`` always answers 500, ``/gate/*`` answers 500
    until ``open`` is set, ``/redirect/*`` redirects."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.open = False  # /gate/* answers 500 until it is opened
        self.statuses: list[tuple[str, str, int]] = []  # (path, delivery id, status answered)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.calls.append((self.path, dict(self.headers), body))
                    attempts = sum(1 for p, h, _ in receiver.calls if p == self.path and
                                   h["X-Trackpipe-Delivery"] == self.headers[
                                       "X-Trackpipe-Delivery"])
                failing = self.path.startswith("/down/") or (
                    self.path.startswith("/flaky/") and attempts <= 3) or (
                    self.path.startswith("/gate/") and not receiver.open)
                status = 307 if self.path.startswith("/redirect/") else 500 if failing else 200
                with receiver.lock:
                    receiver.statuses.append((self.path, self.headers["X-Trackpipe-Delivery"],
                                              status))
                self.send_response(status)
                if status == 307:  # to a path that would accept it
                    self.send_header("Location", "/ok/redirected")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self, path: str) -> Counter:
        """Delivery ids answered 200 on ``path``, with how many times."""
        with self.lock:
            return Counter(d for p, d, status in self.statuses if p == path and status == 200)

    def received(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for p, h, b in self.calls if p == path]

    def wait(self, path: str, count: int, timeout_s: float = 60
             ) -> list[tuple[dict[str, str], bytes]]:
        return wait_until(lambda: self.received(path), timeout_s,
                          lambda found: f"{path}: {len(found)} of {count} calls",
                          until=lambda found: len(found) >= count)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap, tmp_path_factory, receiver):
    env = {"TRACKPIPE_WEBHOOK_BACKOFF_MS": "200", "TRACKPIPE_WEBHOOK_ATTEMPTS": "4",
           "TRACKPIPE_WEBHOOK_TIMEOUT_MS": "2000",
           # the receiver is on loopback, which webhooks may not reach unless allowed
           "TRACKPIPE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
           # lookups ask for it: the triggers service sends it
           "TRACKPIPE_WORKER_TOKEN": WORKER_TOKEN}
    with started_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("triggers"),
                          workers=("worker-1",), env=env, triggers=True) as p:
        added = p.cli("projects", "add", SIGNED, "--secret", SECRET)
        assert added.returncode == 0
        p.signing_secret = added.stdout.split("webhook signing secret: ")[1].strip()
        # the harness registers PROJECT as records were before signing secrets: give it one
        assert p.cli("projects", "set", PROJECT, "--rotate-webhook-secret").returncode == 0
        p.receiver = receiver  # where add() sees its rules followed (rules_followed)
        yield p


def add(pipeline, project: str, name: str, *args: str) -> None:
    done = pipeline.cli("triggers", "add", project, "--name", name, *args)
    assert done.returncode == 0, done.stderr
    rules_followed(pipeline, pipeline.receiver)


PROBE = "rules-probe"  # a rule's name, event and visitor: the probe of rules_followed


def rules_followed(pipeline, receiver: Receiver) -> None:
    """Until the triggers service has read the rules topic up to here: the topic has one
    partition, read in order, so once a rule written now fires (the probe rule, written again
    each time with a webhook path of its own), every rule written before it is known too."""
    path = f"/ok/{PROBE}-{uuid.uuid4().hex[:8]}"
    rule = TriggerRule.build(PROJECT, PROBE, PROBE, webhook=receiver.url + path)
    asyncio.run(registry.write(pipeline.settings.kafka_bootstrap,
                               pipeline.settings.topic(topics.TRIGGERS), rule.key, rule))
    sent_at = -1.0

    def fired() -> bool:
        """An action that fires the probe if it is read after the probe rule (one read
        before it fires an older path, or nothing): sent again each second until one does."""
        nonlocal sent_at
        if receiver.received(path):
            return True
        if time.monotonic() - sent_at > 1:
            track(pipeline, event=PROBE, cookie=PROBE)
            sent_at = time.monotonic()
        return False

    wait_until(fired, 60, "the triggers service never followed the rules topic", every_s=0.05)


def track(pipeline, project: str = PROJECT, auth: tuple[str, str] | None = None,
          expect: int | None = 200, **params: object) -> httpx.Response:
    r = httpx.get(pipeline.url + "/track/ce", params={"project": project, **params},
                  auth=auth, timeout=10)
    assert expect is None or r.status_code == expect, r.text
    return r


def settled(pipeline, receiver: Receiver, path: str, *markers: dict) -> list:
    """What ``path`` received, once a later action of each given visitor, one that does fire,
    was delivered: the service handles a visitor's actions in order, so whatever else of
    theirs would fire (a repeat, a stray) came first. No fixed sleep."""
    ids = {track(pipeline, **marker).headers["x-event-id"] for marker in markers}
    wait_until(lambda: {json.loads(body)["action"]["id"] for _, body in receiver.received(path)},
               60, "a marker was never delivered", until=lambda delivered: ids <= delivered)
    return [(h, body) for h, body in receiver.received(path)
            if json.loads(body)["action"]["id"] not in ids]


def test_a_signed_post_per_matching_action_and_none_for_the_rest(pipeline, receiver):
    add(pipeline, SIGNED, "pro-signup", "--event", "signup", "--where", "ce_plan", "=", "pro",
        "--webhook", receiver.url + "/ok/signed")
    auth = ("", SECRET)
    sent = [track(pipeline, SIGNED, auth, event="signup", ce_plan="pro", cookie=f"s{i}",
                  cv_name=f"N{i}").headers["x-event-id"] for i in range(3)]
    track(pipeline, SIGNED, auth, event="signup", ce_plan="free", cookie="s-free")
    track(pipeline, SIGNED, auth, event="pageview", ce_plan="pro", cookie="s-pv")
    receiver.wait("/ok/signed", 3)
    calls = settled(pipeline, receiver, "/ok/signed", *(
        {"project": SIGNED, "auth": auth, "event": "signup", "ce_plan": "pro", "cookie": c}
        for c in ("s-free", "s-pv")))
    assert len(calls) == 3
    seen = set()
    for headers, body in calls:
        signed = headers["X-Trackpipe-Signature"]
        fields = dict(part.split("=", 1) for part in signed.split(","))
        expected = hmac.new(pipeline.signing_secret.encode(), f"{fields['t']}.".encode() + body,
                            hashlib.sha256).hexdigest()
        assert fields["v1"] == expected and abs(time.time() - int(fields["t"])) < 120
        # not the secure-tracking secret, which every server-side SDK holds
        assert not rules.verify_signature(SECRET, signed, body, int(time.time()))
        assert rules.verify_signature(pipeline.signing_secret, signed, body, int(time.time()))
        doc = json.loads(body)
        assert doc["trigger"] == "pro-signup" and doc["action"]["properties"]["plan"] == "pro"
        assert headers["X-Trackpipe-Delivery"] == f"{doc['action']['id']}/pro-signup"
        assert doc["profile"] is None or doc["profile"]["profile"] == doc["action"]["profile"]
        seen.add(doc["action"]["id"])
    assert seen == set(sent)


def test_a_project_without_a_signing_secret_gets_its_webhooks_once_it_has_one_signed(
        pipeline, receiver):
    """A project registered before each had a signing secret of its own (its record has none)
    gets no unsigned webhook: the firing is held, the log says why, and once `projects set`
    makes a secret the webhook goes out, once, signed with it."""
    legacy = f"legacy{uuid.uuid4().hex[:8]}.example"
    asyncio.run(register(pipeline.settings, ProjectRecord.build(legacy)))  # no webhook secret
    add(pipeline, legacy, "old", "--event", "old", "--webhook", receiver.url + "/ok/legacy")
    wait_until(lambda: httpx.get(pipeline.url + "/track/ce", timeout=10, params={
        "project": legacy, "event": "warm", "cookie": "l0"}).status_code == 200, 30,
        "the gateway never knew the project", every_s=0.2)
    event_id = track(pipeline, legacy, event="old", cookie="l1").headers["x-event-id"]
    log = pipeline.tmp / "triggers.log"
    held = f"project {legacy} has no webhook signing secret"
    wait_until(lambda: held in log.read_text() or receiver.received("/ok/legacy"), 60,
               "the firing was neither held nor delivered", every_s=0.2)
    assert receiver.received("/ok/legacy") == []  # held, never sent unsigned

    made = pipeline.cli("projects", "set", legacy, "--rotate-webhook-secret")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.split("webhook signing secret: ")[1].strip()
    headers, body = receiver.wait("/ok/legacy", 1, timeout_s=60)[0]
    assert headers["X-Trackpipe-Delivery"] == f"{event_id}/old"
    assert rules.verify_signature(secret, headers["X-Trackpipe-Signature"], body,
                                  int(time.time()))
    calls = settled(pipeline, receiver, "/ok/legacy",
                    {"project": legacy, "event": "old", "cookie": "l-marker"})
    assert [h["X-Trackpipe-Delivery"] for h, _ in calls] == [f"{event_id}/old"]
    assert f"project {legacy} has a webhook signing secret now" in log.read_text()


def test_over_quota_actions_never_fire(pipeline, receiver):
    from schemas.quota import QuotaState

    project = f"q{uuid.uuid4().hex[:8]}.example"
    assert pipeline.cli("projects", "add", project, "--quota", "2").returncode == 0
    add(pipeline, project, "any-buy", "--event", "buy", "--webhook", receiver.url + "/ok/quota")
    wait_until(lambda: gateway_knows(pipeline.settings, project, quota=2), 30,
               "the gateway never knew the project")
    for i in range(2):
        track(pipeline, project, event="buy", cookie=f"q{i}")
    pipeline.topic("quota", lambda states: any(s.project == project and s.count >= 2
                                               and s.over for s in states),
                   decode=QuotaState.from_bytes)
    # the gateway follows the quota topic: polled with an action that fires nothing
    wait_until(lambda: track(pipeline, project, expect=None, event="poll",
                             cookie="q-poll").status_code, 15,
               lambda status: f"the gateway answered {status}, not 402",
               until=lambda status: status == 402)
    over = track(pipeline, project, expect=402, event="buy", cookie="q-over")
    over_id = over.headers["x-event-id"]
    assert pipeline.by_id(over_id, project=project)["over_quota"] is True  # logged nevertheless
    assert pipeline.cli("projects", "set", project, "--quota", "100").returncode == 0
    wait_until(lambda: track(pipeline, project, expect=None, event="poll",
                             cookie="q-poll").status_code == 200, 30,
               "raising the quota never lifted the 402", every_s=0.2)
    calls = settled(pipeline, receiver, "/ok/quota",
                    {"project": project, "event": "buy", "cookie": "q-over"})
    fired = {json.loads(body)["action"]["id"] for _, body in calls}
    assert len(calls) == 2 and over_id not in fired


def test_a_webhook_failing_three_times_is_retried_and_delivered_once(pipeline, receiver):
    add(pipeline, PROJECT, "flaky", "--event", "flaky", "--webhook", receiver.url + "/flaky/1")
    event_id = track(pipeline, event="flaky", cookie="f1").headers["x-event-id"]
    receiver.wait("/flaky/1", 4)
    calls = settled(pipeline, receiver, "/flaky/1", {"event": "flaky", "cookie": "f1"})
    assert [h["X-Trackpipe-Delivery"] for h, _ in calls] == [f"{event_id}/flaky"] * 4
    assert len({body for _, body in calls}) == 1  # the same bytes every time


def test_a_dead_webhook_ends_in_the_dead_letter_topic_while_others_fire(pipeline, receiver):
    add(pipeline, PROJECT, "doomed", "--event", "order", "--webhook", receiver.url + "/down/1")
    add(pipeline, PROJECT, "healthy", "--event", "order", "--webhook", receiver.url + "/ok/order")
    event_id = track(pipeline, event="order", cookie="o1").headers["x-event-id"]
    receiver.wait("/ok/order", 1, timeout_s=30)
    dead = pipeline.topic("deadletter", lambda ds: any(
        d.get("delivery") == f"{event_id}/doomed" for d in ds))
    letter = next(d for d in dead if d.get("delivery") == f"{event_id}/doomed")
    assert letter["kind"] == "trigger" and "HTTP 500 after 4 attempt(s)" in letter["error"]
    assert letter["action"]["id"] == event_id
    assert len(receiver.received("/down/1")) == 4


def test_a_js_action_is_in_the_visitors_next_script_response_exactly_once(pipeline):
    add(pipeline, PROJECT, "greet", "--event", "checkout", "--js", "window.tpGreeted = true;")
    cookie = "js" + uuid.uuid4().hex[:8]
    track(pipeline, event="checkout", cookie=cookie)

    def script() -> httpx.Response:
        json_answer = track(pipeline, event="wait", cookie=cookie, response="json")
        assert json_answer.json() == {"success": True}  # JSON answers never take the JS
        other = track(pipeline, event="other", cookie="someone-else")
        assert other.text == ";"
        return httpx.get(pipeline.url + "/track/ping",
                         params={"project": PROJECT, "cookie": cookie}, timeout=10)

    # queued a moment later: actions → triggers → js-actions → gateway
    answer = wait_until(script, 30, "the JS action never reached the gateway",
                        until=lambda answer: answer.text != ";", every_s=0.3)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/javascript")
    assert answer.text.count("window.tpGreeted = true;") == 1
    again = httpx.get(pipeline.url + "/track/ping", params={"project": PROJECT,
                                                            "cookie": cookie}, timeout=10)
    assert again.text == ";"


def test_restarting_the_triggers_service_mid_stream_neither_loses_nor_repeats(pipeline,
                                                                              receiver):
    add(pipeline, PROJECT, "stream", "--event", "stream", "--webhook",
        receiver.url + "/ok/stream")
    sent = []
    for i in range(60):
        sent.append(track(pipeline, event="stream", cookie=f"r{i % 7}").headers["x-event-id"])
        if i == 25:
            pipeline.stop("triggers")
            pipeline.start("triggers", "triggers", "run")
    receiver.wait("/ok/stream", 60, timeout_s=90)
    calls = settled(pipeline, receiver, "/ok/stream",
                    *({"event": "stream", "cookie": f"r{i}"} for i in range(7)))
    fired = Counter(json.loads(body)["action"]["id"] for _, body in calls)
    assert set(fired) == set(sent)
    assert max(fired.values()) == 1, [k for k, n in fired.items() if n > 1]


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere.example", "--name", "x", "--event", "e", "--webhook", "http://h/x"],
     "does not exist"),
    ([PROJECT, "--name", "x", "--event", "e", "--webhook", "ftp://h/x"], "not an http"),
    ([PROJECT, "--name", "x", "--event", "e", "--where", "plan", "=", "pro", "--webhook",
      "http://h/x"], "must start with ce_"),
    ([PROJECT, "--name", "x", "--event", "e", "--where", "ce_n", ">", "many", "--js", "f()"],
     "needs a number"),
    ([PROJECT, "--name", "../x", "--event", "e", "--js", "f()"], "trigger name"),
])
def test_bad_rules_are_refused_and_change_nothing(pipeline, args, message):
    before = pipeline.cli("triggers", "list", PROJECT).stdout
    refused = pipeline.cli("triggers", "add", *args)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1  # one line, no traceback
    assert pipeline.cli("triggers", "list", PROJECT).stdout == before


def test_list_and_remove(pipeline):
    add(pipeline, PROJECT, "temp", "--event", "t", "--where", "cv_email", "exists", "--js", "f()")
    listed = [json.loads(line) for line in
              pipeline.cli("triggers", "list", PROJECT).stdout.splitlines()]
    assert {"name": "temp", "event": "t", "where": ["cv_email exists"], "js": "f()"} in listed
    assert pipeline.cli("triggers", "remove", PROJECT, "temp").returncode == 0
    names = pipeline.cli("triggers", "list", PROJECT).stdout
    assert '"temp"' not in names
    again = pipeline.cli("triggers", "remove", PROJECT, "temp")
    assert again.returncode == 2 and "has no trigger" in again.stderr


def test_webhooks_reach_no_private_address_and_follow_no_redirect(pipeline, receiver):
    """The metadata service of a cloud machine is a link-local address: a rule naming it, also
    inside an IPv6 address (NAT64), is refused when it fires (dead-lettered at once, no request
    made); a receiver answering a redirect is not followed."""
    add(pipeline, PROJECT, "metadata", "--event", "probe",
        "--webhook", "http://169.254.169.254/latest/meta-data/")
    add(pipeline, PROJECT, "metadata-nat64", "--event", "probe",
        "--webhook", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/")
    add(pipeline, PROJECT, "redirected", "--event", "probe",
        "--webhook", receiver.url + "/redirect/1")
    event_id = track(pipeline, event="probe", cookie="m1").headers["x-event-id"]
    dead = pipeline.topic("deadletter", lambda ds: {
        f"{event_id}/metadata", f"{event_id}/metadata-nat64", f"{event_id}/redirected"}
        <= {d.get("delivery") for d in ds})
    errors = {d["delivery"]: d["error"] for d in dead if d.get("delivery")}
    assert "may not reach" in errors[f"{event_id}/metadata"]
    assert "may not reach" in errors[f"{event_id}/metadata-nat64"]
    assert "HTTP 307" in errors[f"{event_id}/redirected"]
    assert len(receiver.received("/redirect/1")) == 1
    assert receiver.received("/ok/redirected") == []


def test_a_workers_lookups_ask_for_its_token_and_the_triggers_service_has_it(pipeline,
                                                                          receiver):
    add(pipeline, PROJECT, "looked-up", "--event", "lookup", "--webhook",
        receiver.url + "/ok/lookup")
    cookie = f"t{uuid.uuid4().hex[:8]}"
    warm = pipeline.by_id(track(pipeline, event="warm", cookie=cookie,
                                cv_name="Ada").headers["x-event-id"])
    port = next(iter(pipeline.web_ports.values()))
    url = f"http://127.0.0.1:{port}/lookup/visitor"
    key = {"key": f"{PROJECT}\ncookie:{cookie}"}
    assert httpx.get(url, params=key, timeout=10).status_code == 401
    assert httpx.get(url, params=key, timeout=10,
                     headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    # the visitor's profile has the name, where the triggers service will look it up
    wait_until(lambda: pipeline.lookup("profile", warm["profile"]), 30,
               lambda found: f"the visitor's profile is {found}",
               until=lambda found: found is not None
               and found["properties"].get("name", [None])[0] == "Ada")
    track(pipeline, event="lookup", cookie=cookie)
    headers, body = receiver.wait("/ok/lookup", 1)[0]
    assert json.loads(body)["profile"]["properties"]["name"] == "Ada"


def test_pending_firings_survive_kill_9_and_a_rebalance_delivered_once_each(pipeline,
                                                                         receiver):
    """Firings wait for a receiver that refuses them; the triggers service is killed with
    SIGKILL, started again, and joined by a second one (a rebalance); then the receiver
    opens. Every firing is delivered once: none lost, none repeated."""
    import signal

    add(pipeline, PROJECT, "gated", "--event", "gated", "--webhook", receiver.url + "/gate/1")
    # sent at once, so that every firing is tried before the first one's retries run out
    # (4 attempts in 1.4 s here: dead-lettered then, it could never be delivered)
    with ThreadPoolExecutor(12) as pool:
        sent = list(pool.map(lambda i: track(pipeline, event="gated", cookie=f"g{i}")
                             .headers["x-event-id"], range(12)))
    # every one was tried (and refused), and is pending
    wait_until(lambda: {h["X-Trackpipe-Delivery"] for h, _ in receiver.received("/gate/1")},
               60, lambda tried: f"{len(tried)} of 12 firings tried",
               until=lambda tried: len(tried) == 12, every_s=0.02)
    pipeline.stop("triggers", signal.SIGKILL)
    pipeline.start("triggers", "triggers", "run")
    pipeline.start("triggers-2", "triggers", "run")  # the partitions are shared out again
    # Their actions were committed before the firings were tried, so nothing fires them
    # again: only the two new owners, resuming what `firings` holds once they share its
    # partitions (after the killed member's session expires), can deliver them.
    receiver.open = True
    expected = {f"{event_id}/gated" for event_id in sent}
    wait_until(lambda: set(receiver.delivered("/gate/1")), 90,
               lambda delivered: f"{len(delivered)} of {len(sent)} delivered",
               until=lambda delivered: delivered == expected, every_s=0.2)
    # a later action that does fire ends the wait for repeats (no fixed sleep)
    marker = track(pipeline, event="gated", cookie="g-marker").headers["x-event-id"]
    wait_until(lambda: f"{marker}/gated" in receiver.delivered("/gate/1"), 90,
               "the marker was never delivered", every_s=0.2)
    delivered = receiver.delivered("/gate/1")
    assert set(delivered) == expected | {f"{marker}/gated"}
    assert set(delivered.values()) == {1}
    pipeline.stop("triggers-2")
