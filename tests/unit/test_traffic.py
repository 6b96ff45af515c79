"""The demo traffic generator: what one person's journey sends, in what order, the same for the
same seed, and a purchase the demo trigger fires for (no broker, no gateway)."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest

from trackpipe.cli.up import DEMO_PROJECT, DEMO_TRIGGER
from trackpipe.traffic import Traffic
from triggers.rules import matching


def params(request) -> dict[str, str]:
    return dict(request.params)


def test_the_first_journey_sends_every_kind_a_newcomer_should_see():
    journey = Traffic(DEMO_PROJECT, seed=1).journey()
    kinds = Counter(r.kind for r in journey.requests)
    assert set(kinds) == {"pageview", "ping", "identify", "push", "purchase"}
    desktop, phone = journey.cookies
    identifies = [r for r in journey.requests if r.kind == "identify"]
    assert [params(r)["cookie"] for r in identifies] == [desktop, phone]  # devices that merge
    assert {params(r)["cv_email"] for r in identifies} == {journey.email}
    landing = params(journey.requests[0])
    tags = parse_qs(urlsplit(landing["ce_url"]).query)
    assert {"utm_source", "utm_medium", "utm_campaign"} <= set(tags) and landing["event"] == "pv"
    app = next(r for r in journey.requests if params(r)["cookie"] == phone)
    assert {"utm_source", "utm_campaign"} <= set(params(app))  # a campaign sent as parameters
    assert params(app)["response"] == "json" and not app.js
    assert all(dict(r.headers)["User-Agent"].startswith("Mozilla/5.0") for r in journey.requests)
    push = next(r for r in journey.requests if r.kind == "push")
    assert push.method == "POST" and push.path == "/track/push"
    assert [json.loads(line)["endpoint"] for line in dict(push.form)["payload"].split("\n")] == [
        "ce", "ce"]


def test_the_purchase_fires_the_demo_projects_trigger_and_the_browser_asks_for_it_after():
    journey = Traffic(DEMO_PROJECT, seed=2).journey()
    at, purchase = next((n, r) for n, r in enumerate(journey.requests) if r.kind == "purchase")
    sent = params(purchase)
    action = {"type": "ce", "event": sent["event"], "over_quota": False,
              "properties": {k[3:]: v for k, v in sent.items() if k.startswith("ce_")}}
    assert matching([DEMO_TRIGGER], action, None) == [DEMO_TRIGGER]
    later = [r for r in journey.requests[at + 1:] if params(r)["cookie"] == sent["cookie"]]
    assert later and all(r.js for r in later)  # JavaScript answers hand the JS action out


def test_the_same_seed_sends_the_same_people_and_another_seed_new_ones():
    def sent(seed):
        return [(r.path, r.params, r.form) for r in Traffic(DEMO_PROJECT, seed).requests(300)]

    assert sent(5) == sent(5)
    assert Traffic(DEMO_PROJECT, 5).run != Traffic(DEMO_PROJECT, 6).run


@pytest.mark.parametrize("visitors", [1, 4, 25])
def test_interleaved_requests_keep_each_persons_order(visitors):
    traffic, replay = Traffic(DEMO_PROJECT, 9), Traffic(DEMO_PROJECT, 9)
    sent = list(traffic.requests(400, visitors))
    assert len(sent) == 400
    by_person: dict[str, list] = {}
    for request in sent:
        person = params(request)["cookie"].rsplit("-", 1)[1][:-1]  # demo-<run>-<n><device>
        by_person.setdefault(person, []).append(request)
    for journey in (replay.journey() for _ in range(max(map(int, by_person)) + 1)):
        person = journey.cookies[0].rsplit("-", 1)[1][:-1]
        got = by_person.get(person, [])
        assert got == journey.requests[:len(got)]


def test_every_request_says_where_its_visitor_is():
    """The demo's requests all come from this machine: each carries its visitor's public
    address, one a device, which the shipped database places in a country."""
    from processors.locations import Locations

    places = Locations()
    journey = Traffic(DEMO_PROJECT, seed=3).journey()
    by_cookie = {}
    for request in journey.requests:
        sent = params(request)
        assert by_cookie.setdefault(sent["cookie"], sent["ip"]) == sent["ip"]
        assert places.locate(sent["ip"]).get("country")
    assert len(by_cookie) == 2  # the desktop and the phone
