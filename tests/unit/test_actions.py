import pytest

from processors.actions import Decided, Enriched, build_record, event_name, split
from processors.timestamps import Clock, EventTime
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


DERIVED = {"browser": "Mobile Safari", "browser_version": "17", "os": "iOS",
           "device_type": "mobile", "device": "mobile", "country": "DE"}


def test_record_fills_campaign_and_the_derived_names():
    record = build_record(raw(referer="https://r/"), decided(), split({
        "event": "pv", "ce_url": "/?utm_source=news"}), Enriched(DERIVED, "1.2.3.4"))
    assert record["properties"] == {"url": "/?utm_source=news", "campaign_source": "news"}
    assert {name: record[name] for name in DERIVED} == DERIVED
    assert list(record)[list(record).index("org_properties") + 1:][:len(DERIVED)] == \
        list(DERIVED)  # after the properties, in their order
    assert record["builtins"]["referer"] == "https://r/"
    assert (record["event_ms"], record["clock"], record["received_ms"]) == (3, "sender", 5)


def test_a_derived_name_the_request_sent_is_a_member_of_the_record_not_a_builtin():
    record = build_record(raw(), decided(), split({"event": "pv", "browser": "MyApp",
                                                   "country": ""}), Enriched(DERIVED, "1.2.3.4"))
    assert "browser" not in record["builtins"] and "country" not in record["builtins"]


def test_the_address_is_kept_as_the_enrichment_says_a_sent_ip_too():
    record = build_record(raw(), decided(), split({"event": "pv", "ip": "1.2.3.4"}),
                          Enriched({}, "1.2.3.0", anonymized=True))
    assert (record["ip"], record["builtins"]["ip"]) == ("1.2.3.0", "1.2.3.0")
    record = build_record(raw(), decided(), split({"event": "pv", "ip": "1.2.3.4"}),
                          Enriched({}, "1.2.3.4"))
    assert (record["ip"], record["builtins"]["ip"]) == ("1.2.3.4", "1.2.3.4")


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
                          split({"idptnc": "c1", "duration": "5"}), Enriched({}, "1.2.3.4"))
    assert {k: record[k] for k in expected} == expected and record["event"] == "update"
