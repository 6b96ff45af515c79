"""`trackpipe demo traffic` through a real broker, a gateway, a worker and the triggers
service: a few seconds of it, and every kind of request it sends is in the day logs; the first
person's two devices are one timeline; campaigns come from landing URLs and from the app's own
parameters; the demo project's trigger fired for the purchase."""

from __future__ import annotations

import asyncio
import json

import pytest

from schemas import topics
from tests.conftest import records
from tests.integration.pipeline import gateway_knows, started_pipeline
from tests.waiting import wait_until
from trackpipe.cli.up import DEMO_PROJECT, ensure_demo
from trackpipe.traffic import APP_CAMPAIGNS, CAMPAIGNS, Traffic

pytestmark = pytest.mark.integration

SEED = 11


@pytest.fixture
def pipeline(kafka_bootstrap, tmp_path):
    with started_pipeline(kafka_bootstrap, tmp_path, workers=("worker-1",),
                          triggers=True) as p:
        asyncio.run(ensure_demo(p.settings))  # the demo project and its trigger, as `up` does
        wait_until(lambda: gateway_knows(p.settings, DEMO_PROJECT), 30,
                   "the gateway never knew the demo project")
        yield p


def test_a_few_seconds_of_demo_traffic_fill_the_logs_the_timeline_and_query(pipeline):
    done = pipeline.cli("demo", "traffic", "--duration", "12", "--rate", "20", "--visitors",
                        "2", "--seed", str(SEED))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sent ") and done.stderr == "", done.stdout
    first = Traffic(DEMO_PROJECT, SEED).journey()  # the same seed: the same first person
    desktop, phone = (f"cookie:{cookie}" for cookie in first.cookies)

    def theirs(lines):
        return [line for line in lines if line["visitor_key"] in (desktop, phone)]

    everything = {("ce", "pv"), ("ping", "ping"), ("identify", "identify"), ("ce", "view_item"),
                  ("ce", "add_to_cart"), ("ce", "purchase")}
    lines = theirs(pipeline.wait_logs(
        lambda lines: everything <= {(line["type"], line["event"]) for line in theirs(lines)},
        60, project=DEMO_PROJECT))
    pageviews = [line for line in lines if line["event"] == "pv"]
    landing = next(line for line in pageviews if "/landing/" in line["properties"]["url"])
    assert landing["properties"]["campaign_name"] in {name for _, _, name in CAMPAIGNS}
    assert landing["browser"] and landing["user_agent"].startswith("Mozilla/5.0")
    app = next(line for line in pageviews if line["visitor_key"] == phone)
    assert app["properties"]["campaign_name"] in {name for _, _, name in APP_CAMPAIGNS}
    assert {line["visitor_key"] for line in lines if line["type"] == "identify"} == {desktop,
                                                                                    phone}

    # one person: both devices' events in one timeline, found by either identifier
    def timeline(*args: str) -> list[dict]:
        shown = pipeline.cli("timeline", DEMO_PROJECT, *args, "--json")
        return [json.loads(line) for line in shown.stdout.splitlines()]

    wait_until(lambda: {e["visitor_key"] for e in timeline("--email", first.email)}, 30,
               "the two devices are not one timeline",
               until=lambda keys: keys == {desktop, phone}, every_s=0.5)
    assert {e["event"] for e in timeline("--cookie", first.cookies[1])} >= {"purchase"}
    table = pipeline.cli("timeline", DEMO_PROJECT, "--email", first.email)
    head, *rows = table.stdout.splitlines()
    assert "visitor key" in head and "device" not in head
    identify = next(row for row in rows if " identify " in row)
    assert f'"email": "{first.email}"' in identify  # what it set, not {}

    # the campaigns, both kinds, in `query`
    query = pipeline.cli("query", DEMO_PROJECT, "SELECT DISTINCT campaign FROM actions WHERE "
                         "campaign IS NOT NULL", "--format", "json")
    campaigns = {json.loads(row)["campaign"] for row in query.stdout.splitlines()}
    assert campaigns & {name for _, _, name in CAMPAIGNS}
    assert campaigns & {name for _, _, name in APP_CAMPAIGNS}
    # and where people are, from the addresses the demo sends (every action has a country)
    query = pipeline.cli("query", DEMO_PROJECT, "SELECT count(*) AS n FROM actions WHERE "
                         "country IS NULL", "--format", "json")
    assert [json.loads(row)["n"] for row in query.stdout.splitlines()] == [0], query.stderr

    # the demo trigger fired for the purchase: a JS action queued for that browser
    queued = f"{DEMO_PROJECT}\n{desktop}\n".encode()
    wait_until(lambda: [m for m in asyncio.run(records(pipeline.settings, topics.JS_ACTIONS))
                        if m.key.startswith(queued)], 30, "the demo trigger never fired",
               every_s=0.5)
