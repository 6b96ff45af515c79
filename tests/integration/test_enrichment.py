"""Enrichment through a real broker: a request from a Chrome on Android phone at a public
address (believed from X-Forwarded-For, as the gateway trusts its proxy) gives a day-log line,
an action, a visit started record and a profile with its device, browser and country;
`trackpipe query` groups actions by country, `trackpipe timeline --json` shows them; and a
project's --ip-anonymize holds from the first record a restarted worker handles."""

from __future__ import annotations

import csv
import io
import json
import uuid

import httpx
import pytest

from tests.integration.pipeline import PROJECT, started_pipeline
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36")
PHONE = {"browser": "Chrome Mobile", "browser_version": "126", "os": "Android",
         "os_version": "14", "device_type": "mobile", "device": "mobile",
         "device_brand": "Google", "device_model": "Pixel 8"}


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap, tmp_path_factory):
    with started_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("enrichment"),
                          workers=("worker-1",),
                          env={"TRACKPIPE_TRUSTED_PROXIES": "127.0.0.1/32",
                               "TRACKPIPE_COMMIT_INTERVAL_MS": "500"}) as p:
        yield p


def send(pipeline, cookie: str, address: str, ua: str = CHROME_ANDROID, **params) -> str:
    """A pageview through the gateway from ``address`` (via its trusted proxy); its event id."""
    answer = httpx.get(pipeline.url + "/track/ce", timeout=10,
                       params={"project": PROJECT, "event": "pv", "cookie": cookie, **params},
                       headers={"User-Agent": ua, "X-Forwarded-For": address})
    assert answer.status_code == 200, answer.text
    return answer.headers["x-event-id"]


def test_a_phone_at_a_public_address_is_on_the_line_visit_and_profile_and_in_queries(pipeline):
    cookie = "c" + uuid.uuid4().hex[:10]
    first = send(pipeline, cookie, "193.0.6.139")              # RIPE NCC: NL
    line = pipeline.by_id(first, timeout_s=60)
    assert {name: line[name] for name in PHONE} == PHONE
    assert (line["country"], line["country_name"], line["ip"]) == ("NL", "Netherlands",
                                                                   "193.0.6.139")
    send(pipeline, "d" + uuid.uuid4().hex[:10], "8.8.8.8", ua="curl/8.5.0")  # US, no device
    by_app = send(pipeline, "e" + uuid.uuid4().hex[:10], "10.1.2.3", device="tablet")
    app_line = pipeline.by_id(by_app)
    assert app_line["device_type"] == "tablet" and "country" not in app_line  # private: none

    actions = pipeline.topic("actions", lambda found: any(a["id"] == first for a in found))
    assert next(a for a in actions if a["id"] == first)["country"] == "NL"
    visits = pipeline.topic("visits", lambda found: any(
        v["visitor_key"] == f"cookie:{cookie}" for v in found))
    started = next(v for v in visits if v["visitor_key"] == f"cookie:{cookie}")
    assert started["type"] == "visit started"
    assert {name: started[name] for name in PHONE} == PHONE and started["country"] == "NL"

    def profile():
        done = pipeline.profile("worker-1", "--cookie", cookie)
        return json.loads(done.stdout) if done.returncode == 0 else None

    shown = wait_until(profile, 30, lambda p: f"no last_seen in {p}",
                       until=lambda p: p is not None and "last_seen" in p, every_s=0.3)
    assert {name: shown["last_seen"][name] for name in PHONE} == PHONE
    assert shown["last_seen"]["country"] == "NL"

    pipeline.handled("raw")
    done = pipeline.cli("query", PROJECT, "SELECT country, count(*) AS actions FROM actions "
                        "WHERE country IS NOT NULL AND event = 'pv' GROUP BY country "
                        "ORDER BY country", "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == ["country", "actions"]
    assert {"NL", "US"} <= {row[0] for row in rows[1:]}

    done = pipeline.cli("timeline", PROJECT, "--cookie", cookie, "--json")
    assert done.returncode == 0, done.stderr
    event, = [json.loads(text) for text in done.stdout.splitlines()]
    assert event["id"] == first and event["device_type"] == "mobile"
    assert event["country"] == "NL"


def test_an_anonymizing_project_keeps_no_full_address_from_a_workers_first_record(pipeline):
    done = pipeline.cli("projects", "set", PROJECT, "--ip-anonymize")
    assert done.returncode == 0, done.stderr
    shown = json.loads(pipeline.cli("projects", "show", PROJECT).stdout)
    assert (shown["ip_anonymize"], shown["location"]) == (True, True)
    # a worker started after the change reads the registry before its first raw record
    pipeline.stop("worker-1")
    pipeline.start_worker("worker-2")
    pipeline.wait_ready("worker-2", timeout_s=120)
    first = send(pipeline, "f" + uuid.uuid4().hex[:10], "2001:4860:4860::8888")
    line = pipeline.by_id(first, timeout_s=60)
    assert (line["ip"], line["country"]) == ("2001:4860:4860::", "US")
    second = send(pipeline, "g" + uuid.uuid4().hex[:10], "193.0.6.139", ip="193.0.6.139")
    line = pipeline.by_id(second)
    assert (line["ip"], line["builtins"]["ip"], line["country"]) == ("193.0.6.0", "193.0.6.0",
                                                                     "NL")
    actions = pipeline.topic("actions", lambda found: any(a["id"] == second for a in found))
    assert next(a for a in actions if a["id"] == second)["ip"] == "193.0.6.0"

    done = pipeline.cli("projects", "set", PROJECT, "--no-location")
    assert done.returncode == 0, done.stderr
    shown = json.loads(pipeline.cli("projects", "show", PROJECT).stdout)
    assert (shown["ip_anonymize"], shown["location"]) == (True, False)  # the others stay

    def located_after_the_change():
        line = pipeline.by_id(send(pipeline, "h" + uuid.uuid4().hex[:10], "8.8.8.8"))
        return line

    line = wait_until(located_after_the_change, 30, lambda last: f"still located: {last}",
                      until=lambda last: "country" not in last, every_s=0.3)
    assert line["ip"] == "8.8.8.0" and line["device_type"] == "mobile"
