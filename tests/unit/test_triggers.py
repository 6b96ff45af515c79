"""Trigger rules: what a user may type, which actions fire, and the delivery decisions."""

import hashlib
import hmac
import json

import pytest

from gateway.jsactions import JsQueue
from schemas.firing import Firing
from schemas.project import ProjectError
from schemas.trigger import Condition, TriggerError, TriggerRule
from triggers import rules


def rule(*where, event="signup", name="r"):
    return TriggerRule.build("shop", name, event, webhook="http://127.0.0.1:9/hook",
                             conditions=tuple(Condition.parse(w.split(" ", 2)) for w in where))


def action(**over):
    base = {"id": "e1", "project": "shop", "type": "ce", "event": "signup",
            "over_quota": False, "profile": "p1", "visitor_key": "cookie:c1",
            "properties": {"plan": "Pro Annual", "amount": "49.5"},
            "visitor_properties": {"email": "a@x.io"}, "visit_properties": {"source": "ad"}}
    return {**base, **over}


# -- building rules ---------------------------------------------------------------------------

@pytest.mark.parametrize(("words", "message"), [
    (["plan"], "KEY OP VALUE"),
    (["plan", "=", "x"], "must start with ce_"),
    (["ce_", "=", "x"], "must start with ce_"),
    (["ce_plan", "~", "x"], "not one of"),
    (["ce_plan", "="], "exactly one value"),
    (["ce_plan", "=", "x", "y"], "exactly one value"),
    (["ce_plan", "exists", "x"], "takes no value"),
    (["ce_amount", ">", "lots"], "needs a number"),
])
def test_malformed_conditions_are_refused_with_the_reason(words, message):
    with pytest.raises(TriggerError, match=message):
        Condition.parse(words)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"webhook": "ftp://example.com/x"}, "not an http"),
    ({"webhook": "file:///etc/passwd"}, "not an http"),
    ({"webhook": "http:///nohost"}, "not an http"),
    ({}, "exactly one action"),
    ({"webhook": "http://h/x", "js": "alert(1)"}, "exactly one action"),
    ({"js": "  "}, "must not be empty"),
    ({"js": "x" * 20000}, "over 16384 bytes"),
])
def test_malformed_rules_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(TriggerError, match=message):
        TriggerRule.build("shop", "r", "signup", **kwargs)


def test_rule_names_and_projects_are_checked_like_project_names():
    with pytest.raises(ProjectError, match="trigger name"):
        TriggerRule.build("shop", "../x", "signup", js="x()")
    with pytest.raises(ProjectError, match="project name"):
        TriggerRule.build("Shop/..", "r", "signup", js="x()")
    with pytest.raises(TriggerError, match="event name"):
        TriggerRule.build("shop", "r", " ", js="x()")


def test_a_rule_survives_its_topic_record():
    r = rule("ce_plan contains pro", "cv_email exists")
    assert TriggerRule.from_bytes(r.to_bytes()) == r
    assert r.key == "shop\nr"
    assert r.shown()["where"] == ["ce_plan contains pro", "cv_email exists"]


# -- matching ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "fires"), [
    ("ce_plan = Pro Annual", True),
    ("ce_plan = pro annual", False),          # = is exact
    ("ce_plan != Basic", True),
    ("ce_plan != Pro Annual", False),
    ("ce_missing != x", True),                # absent differs from everything
    ("ce_plan contains PRO", True),           # contains ignores case
    ("ce_plan contains basic", False),
    ("ce_amount > 49", True),
    ("ce_amount > 49.5", False),
    ("ce_amount < 50", True),
    ("ce_plan > 1", False),                   # not a number: never greater
    ("ce_plan exists", True),
    ("ce_missing exists", False),
    ("ce_missing = x", False),
    ("ce_missing contains x", False),
    ("cv_email contains @x.io", True),
    ("cs_source = ad", True),
    ("cs_plan exists", False),                # scopes do not leak into each other
])
def test_conditions(where, fires):
    assert bool(rules.matching([rule(where)], action(), None)) is fires


def test_an_empty_value_does_not_exist():
    assert not rules.matching([rule("ce_plan exists")], action(properties={"plan": ""}), None)


def test_booleans_are_not_numbers():
    assert not rules.matching([rule("ce_flag > 0")], action(properties={"flag": True}), None)


def test_visitor_conditions_see_the_profile_overlaid_by_this_request():
    profile = {"properties": {"company": "Acme", "email": "old@x.io"}}
    assert rules.matching([rule("cv_company = Acme")], action(), profile)
    assert rules.matching([rule("cv_email = a@x.io")], action(), profile)
    assert not rules.matching([rule("cv_company = Acme")], action(), None)


def test_all_conditions_must_hold():
    assert rules.matching([rule("ce_plan contains pro", "cs_source = ad")], action(), None)
    assert not rules.matching([rule("ce_plan contains pro", "cs_source = tv")], action(), None)


def test_only_the_rules_of_the_event_fire_in_name_order():
    found = rules.matching([rule(name="b"), rule(name="a"), rule(event="other", name="c")],
                           action(), None)
    assert [r.name for r in found] == ["a", "b"]


@pytest.mark.parametrize("over", [{"over_quota": True}, {"type": "update"}, {"type": "ping"}])
def test_over_quota_actions_and_other_records_never_fire(over):
    assert rules.matching([rule()], action(**over), None) == []


# -- delivery decisions -----------------------------------------------------------------------

def test_the_signature_is_the_hmac_of_the_time_and_the_exact_body():
    body = b'{"a":1}'
    expected = hmac.new(b"signing-secret-0", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert rules.signature("signing-secret-0", body, 1800000000) == (
        f"t=1800000000,v1={expected}")


@pytest.mark.parametrize(("secret", "body", "now", "valid"), [
    ("signing-secret-0", b'{"a":1}', 1800000000, True),
    ("signing-secret-0", b'{"a":1}', 1800000000 + 300, True),      # at the tolerance
    ("signing-secret-0", b'{"a":1}', 1800000000 + 301, False),     # a replay, too late
    ("signing-secret-0", b'{"a":1}', 1800000000 - 301, False),     # from the future
    ("another-secret-0", b'{"a":1}', 1800000000, False),
    ("signing-secret-0", b'{"a":2}', 1800000000, False),           # the body was changed
], ids=["valid", "at-tolerance", "too-old", "too-new", "wrong-secret", "changed-body"])
def test_a_receiver_verifies_a_signature(secret, body, now, valid):
    header = rules.signature("signing-secret-0", b'{"a":1}', 1800000000)
    assert rules.verify_signature(secret, header, body, now) is valid


@pytest.mark.parametrize("header", ["", "v1=abc", "t=x,v1=abc", "t=1800000000",
                                    "t=1800000000,v1="])
def test_a_malformed_signature_never_verifies(header):
    assert not rules.verify_signature("signing-secret-0", header, b"{}", 1800000000)


@pytest.mark.parametrize(("secret", "signed"), [
    ("signing-secret-0", True), (None, False), ("", False),
], ids=["secret", "none", "empty"])
def test_a_webhook_is_signed_or_not_sent(secret, signed):
    body = b'{"a":1}'
    headers = rules.webhook_headers(secret, "e1/r", "r", body, 1800000000)
    if not signed:  # held by the service until the project has a secret, never sent unsigned
        assert headers is None
        return
    assert headers == {"Content-Type": "application/json", "User-Agent": "trackpipe",
                       "X-Trackpipe-Delivery": "e1/r", "X-Trackpipe-Trigger": "r",
                       "X-Trackpipe-Signature": rules.signature(secret, body, 1800000000)}
    assert rules.verify_signature(secret, headers["X-Trackpipe-Signature"], body, 1800000000)


ADDRESSES = [  # (address, may a webhook reach it, id)
    ("93.184.216.34", True, "public-v4"),
    ("2606:2800:220:1::1", True, "public-v6"),
    ("127.0.0.1", False, "loopback"),
    ("::1", False, "loopback-v6"),
    ("10.1.2.3", False, "private"),
    ("172.16.0.1", False, "private-172"),
    ("192.168.1.1", False, "private-192"),
    ("169.254.169.254", False, "metadata"),
    ("fe80::1", False, "link-local-v6"),
    ("fe80::1%eth0", False, "link-local-v6-zone"),
    ("100.64.0.1", False, "shared"),
    ("0.0.0.0", False, "unspecified"),
    ("::", False, "unspecified-v6"),
    ("224.0.0.1", False, "multicast"),
    ("ff0e::1", False, "multicast-v6-global-scope"),
    ("fc00::1", False, "unique-local"),
    ("fec0::1", False, "site-local"),
    ("feff:ffff::1", False, "site-local-top"),
    # IPv4-mapped ::ffff:0:0/96
    ("::ffff:127.0.0.1", False, "mapped-loopback"),
    ("::ffff:10.0.0.1", False, "mapped-private"),
    ("::ffff:5db8:d822", True, "mapped-public"),
    # IPv4-translated ::ffff:0:0:0/96
    ("::ffff:0:7f00:1", False, "translated-loopback"),
    ("::ffff:0:5db8:d822", True, "translated-public"),
    # IPv4-compatible ::/96
    ("::7f00:1", False, "compatible-loopback"),
    ("::a9fe:a9fe", False, "compatible-metadata"),
    ("::a00:1", False, "compatible-private"),
    ("::5db8:d822", True, "compatible-public"),
    # NAT64: the well-known prefix carries the address; a local-use prefix is refused
    ("64:ff9b::a9fe:a9fe", False, "nat64-metadata"),
    ("64:ff9b::7f00:1", False, "nat64-loopback"),
    ("64:ff9b::5db8:d822", True, "nat64-public"),
    ("64:ff9b:1::a9fe:a9fe", False, "nat64-local-use"),
    ("64:ff9b:1:5db8:d822::", False, "nat64-local-use-public-inside"),
    # 6to4 2002::/16
    ("2002:7f00:1::1", False, "6to4-loopback"),
    ("2002:a9fe:a9fe::1", False, "6to4-metadata"),
    ("2002:c0a8:101::1", False, "6to4-private"),
    ("2002:5db8:d822::1", True, "6to4-public"),
    # Teredo 2001::/32: refused, whatever its server and client
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False, "teredo"),
    ("2001:0:5db8:d822::a246:2ddd", False, "teredo-public-inside"),
    # ISATAP: the interface id 0:5efe or 200:5efe names an IPv4 address
    ("2606:2800:220:1:0:5efe:a9fe:a9fe", False, "isatap-metadata"),
    ("2606:2800:220:1:200:5efe:a00:1", False, "isatap-private-u-bit"),
    ("2606:2800:220:1:0:5efe:5db8:d822", True, "isatap-public"),
    ("fd00::0:5efe:5db8:d822", False, "isatap-public-inside-private-prefix"),
]


@pytest.mark.parametrize(("address", "allowed"), [a[:2] for a in ADDRESSES],
                         ids=[a[2] for a in ADDRESSES])
def test_webhooks_reach_only_public_addresses(address, allowed):
    assert rules.webhook_address_allowed(address) is allowed


@pytest.mark.parametrize(("address", "networks", "allowed"), [
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("127.0.0.1", ["10.0.0.0/8"], False),
    ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),       # the IPv4 address inside is judged
    ("64:ff9b::a01:203", ["10.0.0.0/8"], True),
    ("2002:a01:203::1", ["10.0.0.0/8"], True),
    ("64:ff9b::a9fe:a9fe", ["10.0.0.0/8"], False),
    ("fec0::1", ["fec0::/10"], True),                # a network named as written
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ["10.0.0.0/8"], False),
], ids=["allowed", "other", "mapped", "nat64", "6to4", "nat64-elsewhere", "site-local",
        "teredo"])
def test_an_operator_can_allow_a_network(address, networks, allowed):
    import ipaddress

    named = [ipaddress.ip_network(n) for n in networks]
    assert rules.webhook_address_allowed(address, named) is allowed


def test_retry_delays_double_and_stop_after_the_last_attempt():
    assert [rules.retry_delay(a, 4, 0.5) for a in range(1, 5)] == [0.5, 1.0, 2.0, None]
    assert rules.retry_delay(30, 40, 1.0) == rules.MAX_DELAY_S


@pytest.mark.parametrize(("status", "again"), [
    (None, True), (500, True), (503, True), (408, True), (429, True),
    (400, False), (404, False), (410, False)])
def test_which_failures_are_retried(status, again):
    assert rules.retryable(status) is again


def test_a_firing_survives_its_topic_record_and_its_body_is_json():
    firing = Firing(rules.firing_id("e1", "r"), 3, rule("ce_plan exists"), action(),
                    {"profile": "p1"})
    again = Firing.from_bytes(firing.id, 3, firing.to_bytes())
    assert again == firing
    body = json.loads(firing.body())
    assert body == {"trigger": "r", "project": "shop", "delivery": "e1/r",
                    "action": action(), "profile": {"profile": "p1"}}


# -- the gateway's JS queue -------------------------------------------------------------------

def test_queued_js_is_taken_once_and_tombstones_are_applied():
    queue = JsQueue(lambda: 0.0)
    queue.apply("shop\ncookie:c1\ne1/a", b"alert(1)")
    queue.apply("shop\ncookie:c1\ne2/b", b"alert(2)")
    queue.apply("shop\ncookie:c2\ne3/a", b"alert(3)")
    queue.apply("shop\ncookie:c2\ne3/a", None)           # another gateway handed it out
    assert len(queue) == 2
    keys, script = queue.take("shop", "cookie:c1")
    assert keys == ["shop\ncookie:c1\ne1/a", "shop\ncookie:c1\ne2/b"]
    assert script.count(b"try {") == 2 and b"alert(1)" in script and b"alert(2)" in script
    assert queue.take("shop", "cookie:c1") == ([], b"")
    assert queue.take("shop", "cookie:c2") == ([], b"")
    assert queue.take("other", "") == ([], b"")
    for key in keys:  # our own tombstones coming back change nothing
        queue.apply(key, None)
    assert len(queue) == 0


def test_a_visitor_key_with_a_newline_cannot_shift_the_delivery_id():
    queue = JsQueue(lambda: 0.0)
    queue.apply("shop\ncookie:a\nb\ne1/r", b"x()")
    assert queue.take("shop", "cookie:a\nb")[0] == ["shop\ncookie:a\nb\ne1/r"]


def test_a_js_action_waits_for_its_visitor_a_week_at_most():
    now = [1000.0]
    queue = JsQueue(lambda: now[0], ttl_ms=7 * 24 * 3_600_000)
    queue.apply("shop\ncookie:gone\ne1/a", b"alert(1)")
    now[0] += 3 * 24 * 3600
    queue.apply("shop\ncookie:back\ne2/a", b"alert(2)")
    queue.apply("shop\ncookie:gone\ne1/a", None)  # a tombstone of an expired one: no error
    queue.apply("shop\ncookie:late\ne3/a", b"alert(3)")
    now[0] += 5 * 24 * 3600  # e1 is 8 days old (gone anyway), e2 and e3 5 days old
    assert len(queue) == 2
    assert queue.take("shop", "cookie:back")[0] == ["shop\ncookie:back\ne2/a"]
    now[0] += 2 * 24 * 3600 + 1  # e3 is older than a week: dropped, never handed out
    queue.apply("shop\ncookie:other\ne4/a", b"alert(4)")
    assert queue.take("shop", "cookie:late") == ([], b"")
    assert len(queue) == 1


def test_a_firing_of_a_huge_action_fits_a_kafka_message_and_says_it_was_cut():
    from schemas.firing import MAX_FIRING_BYTES

    big = {**action(), "properties": {"text": "日本語" * 150_000}}  # 1.35 MB of UTF-8
    firing = Firing(rules.firing_id("e1", "r"), 3, rule("ce_plan exists"), big,
                    {"profile": "p1", "properties": {"x": "y"}})
    bounded = firing.bounded()
    assert len(bounded.to_bytes()) < MAX_FIRING_BYTES < len(firing.to_bytes())
    assert bounded.action["id"] == "e1" and bounded.action["truncated"] == len(firing.to_bytes())
    assert bounded.profile == {"profile": "p1", "truncated": True}
    small = Firing(rules.firing_id("e1", "r"), 3, rule("ce_plan exists"), action(), None)
    assert small.bounded() is small
    # UTF-8, not \\u escapes: a 400 KB action of non-ASCII text stays about that size
    text = Firing("e/r", 0, rule("ce_plan exists"), {"t": "é" * 200_000}, None).to_bytes()
    assert len(text) < 450_000


def test_queued_js_is_bounded_per_visitor_and_per_project(monkeypatch):
    import gateway.jsactions as jsactions

    monkeypatch.setattr(jsactions, "MAX_PER_PROJECT", 30)
    queue = JsQueue(lambda: 0.0)
    for n in range(jsactions.MAX_PER_VISITOR + 5):  # one visitor: the newest are kept
        queue.apply(f"shop\ncookie:a\ne{n}/r", f"a{n}()".encode())
    keys, script = queue.take("shop", "cookie:a")
    assert len(keys) == jsactions.MAX_PER_VISITOR and b"a24()" in script and b"a4()" not in script
    for n in range(40):  # many visitors: the project holds at most MAX_PER_PROJECT
        queue.apply(f"shop\ncookie:v{n}\ne{n}/r", b"x()")
    assert len(queue) == 30 and queue.dropped == 5 + 10
    queue.apply("shop\ncookie:v0\ne0/r", None)  # taken elsewhere: room again
    queue.apply("shop\ncookie:w\ne/r", b"y()")
    assert len(queue) == 30


async def test_profile_lookups_reach_the_workers_at_a_private_address_and_webhooks_do_not():
    """The worker URL is the operator's setting (a compose service name resolves to a private
    address): lookups go there; a webhook to the same host is refused by the guard."""
    from aiohttp import web

    from triggers.addresses import WebClient

    async def lookup(request):
        return web.json_response({"profile": "p1", "properties": {}, "merged_into": None})

    app = web.Application()
    app.router.add_get("/lookup/profile", lookup)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    from runtime.settings import Settings
    from triggers.actions import ActionReader

    client = WebClient((), timeout_s=5)
    await client.start()
    try:
        url = f"http://localhost:{port}"
        reader = ActionReader(Settings(worker_url=url), None, client)
        assert (await reader.profile("shop.example", "p1"))["profile"] == "p1"
        assert await client.refused(url) is not None  # a webhook there: refused
    finally:
        await client.close()
        await runner.cleanup()
