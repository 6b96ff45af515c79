import pytest

from processors.actions import Decided, build_record, event_name, split
from processors.timestamps import Clock, EventTime
from processors.useragent import classify
from processors.visits import Visit
from schemas.raw import RawRecord


def test_split_sorts_by_prefix_and_keeps_unknown_parameters_as_metadata():
    parts = split({"ce_x": "1", "cv_name": "Rio", "cs_nap": "true", "co_id": "acme",
                   "event": "bark", "timeout": "5", "mystery": "kept", "ce_": "empty-name"})
    assert parts.action == {"x": "1"} and parts.visitor == {"name": "Rio"}
    assert parts.visit == {"nap": "true"} and parts.org == {"id": "acme"}
    assert parts.builtins == {"event": "bark", "timeout": "5", "org": "acme"}
    assert parts.meta == {"mystery": "kept", "ce_": "empty-name"}


@pytest.mark.parametrize(("params", "name"), [
    ({"event": "bark"}, "bark"), ({"ce_name": "legacy"}, "legacy"),
    ({"event": "e", "ce_name": "legacy"}, "e"), ({}, "unnamed")])
def test_event_name(params, name):
    assert event_name(split(params)) == name


def raw(endpoint="ce", referer=""):
    return RawRecord(id="e1", project="p", endpoint=endpoint, received_ms=5, ip="1.2.3.4",
                     user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148 "
                     "Safari/604.1", visitor_key="cookie:c", referer=referer)


def decided(updates=None):
    return Decided("p1", "cookie:c", EventTime(3, Clock.SENDER), Visit("v1", 5, 5, 10),
                   updates)


def test_record_fills_campaign_and_device_where_the_request_left_them_out():
    record = build_record(raw(referer="https://r/"), decided(), split({
        "event": "pv", "ce_url": "/?utm_source=news", "browser": "Custom"}))
    assert record["properties"] == {"url": "/?utm_source=news", "campaign_source": "news"}
    assert (record["browser"], record["os"], record["device"]) == ("Custom", "iOS", "mobile")
    assert record["builtins"]["referer"] == "https://r/"
    assert (record["event_ms"], record["clock"], record["received_ms"]) == (3, "sender", 5)


@pytest.mark.parametrize(("ua", "expected"), [
    ("Mozilla/5.0 (Windows NT 10.0; Win64) AppleWebKit Chrome/126.0 Safari/537.36 Edg/126.0",
     ("Edge", "Windows", "desktop")),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit Version/17.5 Safari/605.1.15",
     ("Safari", "Mac OS X", "desktop")),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/126.0 Mobile Safari/537.36",
     ("Chrome", "Android", "mobile")),
    ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) Safari/604.1", ("Safari", "iOS", "tablet")),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
     ("Firefox", "Linux", "desktop")),
    ("Googlebot/2.1 (+http://www.google.com/bot.html)", ("Bot", "Other", "bot")),
], ids=["edge", "safari-mac", "chrome-android", "ipad", "firefox-linux", "bot"])
def test_classify(ua, expected):
    c = classify(ua)
    assert (c["browser"], c["os"], c["device"]) == expected


def test_classify_empty():
    assert classify("") == {}


def test_remember_action_keeps_the_newest_client_ids_bounded():
    from processors.actions import RECENT_ACTIONS, remember_action

    recent = {}
    for n in range(RECENT_ACTIONS + 5):
        recent = remember_action(recent, f"c{n}", f"e{n}")
    recent = remember_action(recent, "c10", "e10-again")
    assert len(recent) == RECENT_ACTIONS and list(recent)[-1] == "c10"
    assert "c0" not in recent and recent["c10"] == "e10-again"
    assert remember_action(recent, None, "x") is recent


@pytest.mark.parametrize(("updates", "expected"), [
    ("e1", {"updates": "e1", "orphan": False}), (None, {"updates": None, "orphan": True})])
def test_an_update_says_which_action_it_updates_or_that_it_is_an_orphan(updates, expected):
    record = build_record(raw(endpoint="update"), decided(updates),
                          split({"idptnc": "c1", "duration": "5"}))
    assert {k: record[k] for k in expected} == expected and record["event"] == "update"
