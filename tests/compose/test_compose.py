"""The compose deployment brought up for real (`make test-compose`): docker-compose.yml with the
images `make images` built, three brokers (replication factor 3, min.insync.replicas 2), two
gateways behind nginx, three workers and two triggers services scaled with --scale,
Prometheus scraping every role that serves metrics. SDK-like traffic goes through nginx's
loopback port; one broker container and one worker container are killed with SIGKILL
mid-traffic and the worker is started again while it flows. Then the scale test's checks
(tests/integration/scale.py): every request answered 2xx is in the day logs exactly once, no
visit is closed twice, and the profiles are those of one worker alone replaying the same raw
records, and those of the input. The project is removed (`down -v`) whatever happened; a
failed run first keeps the day logs, the journal, each worker's log and a report of what was
logged twice in build/test-compose/evidence (tests/compose/evidence.py).

Not part of `make test`: it needs a Docker engine and the images, and takes minutes
(docs/deploy.md has its times and throughput).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter

import httpx
import pytest
import yaml

from logstore.layout import day_of
from runtime.settings import Settings
from tests.compose import evidence
from tests.compose.stack import ROOT, Stack
from tests.conftest import records
from tests.integration.pipeline import PROJECT
from tests.integration.scale import (
    check_against_one_worker,
    check_exactly_once,
    logged,
    people,
    send_all,
    visits_with_ends,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

REQUESTS = int(os.environ.get("TRACKPIPE_COMPOSE_REQUESTS", "5000"))
SCALE = {"gateway": 2, "processors": 3, "triggers": 2}
KILL_AT = 0.4  # of the requests: a broker and a worker are killed
RESTART_AT = 0.6  # the killed worker is started again, while the traffic still flows
# how many targets each of Prometheus's jobs (deploy/prometheus.yml) must scrape; the roles that
# serve metrics must each have a job
TARGETS = {"gateway": SCALE["gateway"], "processors": SCALE["processors"],
           "triggers": SCALE["triggers"], "kafka": 3, "nginx": 1, "prometheus": 1}
MUST_SCRAPE = {"gateway", "processors", "kafka", "nginx", "prometheus"}
LOGS = "/home/trackpipe/data/logs"
JOURNAL = "/home/trackpipe/data/processors/journal"
RF3 = {"TRACKPIPE_REPLICATION_FACTOR": "3"}
LOG = ROOT / "build" / "test-compose" / "compose.log"
EVIDENCE = ROOT / "build" / "test-compose" / "evidence"  # what a failed run leaves
# The workers log at faust's info level, as the scale test's do: which worker held which raw
# partition when is in their logs.
OVERRIDES = (ROOT / "tests" / "compose" / "workers-info.yml",)


@pytest.fixture
def stack():
    """The deployment, up and healthy, with the test's project registered before the gateways
    start (they read the registry before they say they are ready); removed at the end, its
    containers' logs kept in build/test-compose/compose.log."""
    s = Stack(os.environ.get("COMPOSE_PROJECT_NAME", "trackpipe-compose-test"), LOG, OVERRIDES)
    s.compose("down", "--volumes", "--remove-orphans")  # what an interrupted run left
    started = time.monotonic()
    try:
        s.compose("up", "-d", "topics")  # the brokers first, healthy, then the topics
        topics = s.containers("topics")[0]
        wait_until(lambda: s.inspect(topics)["State"], 300, "the topics job never ended",
                   until=lambda state: not state["Running"], every_s=0.5)
        assert s.inspect(topics)["State"]["ExitCode"] == 0, s.compose("logs", "topics")
        s.compose("run", "--rm", "--no-deps", "topics", "projects", "add", PROJECT)
        scale = [arg for role, n in SCALE.items() for arg in ("--scale", f"{role}={n}")]
        s.compose("up", "-d", *scale)
        s.wait_healthy(300)
        print(f"\ncompose up: every container healthy after {time.monotonic() - started:.1f} s")
        yield s
    finally:
        print(f"\ncompose logs: {s.log}")
        s.down()


def prometheus_targets(stack: Stack) -> Counter:
    """How many targets of each job Prometheus scrapes with success."""
    answer = httpx.get(f"http://127.0.0.1:{stack.prometheus_port}/api/v1/targets", timeout=10)
    answer.raise_for_status()
    return Counter(t["labels"]["job"] for t in answer.json()["data"]["activeTargets"]
                   if t["health"] == "up")


def keep_evidence(stack: Stack) -> None:
    """Before the project is removed: the shared volumes' day logs and journal, each worker
    container's log, and ``evidence.report`` of every event id logged more than once, in
    EVIDENCE (the report printed too)."""
    shutil.rmtree(EVIDENCE, ignore_errors=True)
    EVIDENCE.mkdir(parents=True)
    workers = stack.containers("processors")
    stack.copy_out(workers[0], LOGS, EVIDENCE / "logs")
    stack.copy_out(workers[0], JOURNAL, EVIDENCE / "journal")
    for container in workers:
        name = stack.inspect(container)["Name"].lstrip("/")
        (EVIDENCE / f"{name}.log").write_text(stack.container_log(container))
    try:
        raw = asyncio.run(records(Settings(kafka_bootstrap=stack.bootstrap), "raw"))
    except Exception as exc:  # noqa: BLE001 - the files are evidence enough
        print(f"evidence: the raw topic could not be read: {exc!r}")
        raw = None
    text = evidence.report(EVIDENCE / "logs", EVIDENCE / "journal", raw)
    (EVIDENCE / "report.txt").write_text(text + "\n")
    print(f"\nevidence kept in {EVIDENCE}:\n{text}")


def test_the_scaled_deployment_in_containers_survives_kills_with_nothing_lost(stack, tmp_path):
    try:
        run_and_check(stack, tmp_path)
    except BaseException:
        try:
            keep_evidence(stack)
        except Exception as exc:  # noqa: BLE001 - the failure itself is what must show
            print(f"evidence: not all of it could be kept: {exc!r}")
        raise


def run_and_check(stack: Stack, tmp_path) -> None:
    for role, n in SCALE.items():
        assert len(stack.containers(role)) == n, role
    jobs = {c["job_name"] for c in yaml.safe_load(
        (ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"]}
    assert MUST_SCRAPE <= jobs <= set(TARGETS), jobs
    scraped = Counter({job: TARGETS[job] for job in jobs})
    wait_until(lambda: prometheus_targets(stack), 120,
               lambda up: f"Prometheus scrapes {dict(up)}, not {dict(scraped)}",
               until=lambda up: up == scraped, every_s=1)

    run = Settings(kafka_bootstrap=stack.bootstrap, replication_factor=3,
                   data_dir=tmp_path / "run")  # the compose file's topics: default prefix
    first_day = day_of(int(time.time() * 1000))
    persons = people(REQUESTS, int(time.time() * 1000) - 3_600_000)
    total = sum(map(len, persons))
    broker = stack.containers("kafka-2")[0]
    worker = stack.containers("processors")[1]
    events: dict = {"killed_at": None, "restarted_at": None}

    async def progress(accepted: int) -> None:
        if events["killed_at"] is None and accepted >= total * KILL_AT:
            events["killed_at"] = accepted
            events["killed_after_s"] = time.monotonic() - started
            await asyncio.gather(asyncio.to_thread(stack.kill, broker),
                                 asyncio.to_thread(stack.kill, worker))
        elif (events["killed_at"] is not None and events["restarted_at"] is None
              and accepted >= total * RESTART_AT):
            events["restarted_at"] = accepted
            await asyncio.to_thread(stack.start, worker)

    started = time.monotonic()
    accepted, statuses = asyncio.run(send_all(persons, [stack.url], progress))
    sent_s = time.monotonic() - started
    assert set(statuses) <= {200, 202, "resent"}, statuses
    assert events["restarted_at"] is not None and events["restarted_at"] < total, events
    assert stack.inspect(worker)["State"]["Running"], "the restarted worker is not running"
    days = sorted({first_day, day_of(int(time.time() * 1000))})

    def logged_now() -> Counter:
        stack.copy_out(stack.containers("processors")[0], LOGS, run.data_dir / "logs")
        return logged(run, days)

    wait_until(logged_now, 420, "not every accepted request reached the logs",
               until=lambda counts: set(accepted) <= set(counts), every_s=2)
    processed_s = time.monotonic() - started
    visits = visits_with_ends(run)
    # the workers stop as `docker-compose stop` stops them, each publishing what it holds
    stack.compose("stop", "--timeout", "60", "processors")
    counts = logged_now()

    print(f"\ncompose run: {total} requests through nginx to {SCALE['gateway']} gateways in "
          f"{sent_s:.1f} s ({total / sent_s:.0f} req/s), statuses {dict(statuses)}; kafka-2 and "
          f"a worker killed after {events['killed_at']} ({events['killed_after_s']:.1f} s), "
          f"the worker started again after {events['restarted_at']}; all in the logs after "
          f"{processed_s:.1f} s")
    assert len(accepted) == total
    check_exactly_once(accepted, statuses, counts, visits)
    replay_started = time.monotonic()
    got = check_against_one_worker(run, persons, days, tmp_path, RF3)
    print(f"profiles: {sum(got[0].values())} people, {sum(got[1].values())} merged-away "
          f"profiles, identical to the single-worker run (replayed and compared in "
          f"{time.monotonic() - replay_started:.1f} s)")
