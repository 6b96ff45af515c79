"""A firing given up is a dead letter and an ingestion warning, counted on the triggers
service's /metrics (``triggers.delivery``, ``triggers.warned``, ``triggers.metrics``), with the
network and Kafka faked at their seams. Through a real broker: test_operator_views."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from runtime import prometheus as prom
from runtime.settings import Settings
from schemas import topics
from schemas.deadletter import DeadLetter
from schemas.firing import Firing
from schemas.partitioning import partition_for
from schemas.trigger import TriggerRule
from schemas.warning import IngestionWarning, Kind
from triggers.delivery import Delivery
from triggers.metrics import TriggersMetrics, serve
from triggers.warned import TriggerWarnings


class Answer:
    def __init__(self, status):
        self.status = status
        self.content = self

    async def read(self, n):
        return b""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


class FakeWeb:
    """A webhook client whose receiver answers ``status`` (or whose address is refused)."""

    def __init__(self, status=200, refused=None):
        self.status = status
        self.why_refused = refused
        self.session = self

    async def refused(self, url):
        return self.why_refused

    def post(self, url, **request):
        return Answer(self.status)


class FakeWriter:
    topics = {topics.FIRINGS: "t.firings", topics.DEADLETTER: "t.deadletter",
              topics.WARNINGS: "t.warnings", topics.JS_ACTIONS: "t.js-actions"}

    def __init__(self):
        self.sent = defaultdict(list)

    async def send(self, name, key, value, partition=None):
        self.sent[name].append((key, value, partition))


def firing(webhook="https://hooks.example/x", js=None):
    rule = TriggerRule.build("shop.example", "big-order", "buy", webhook=webhook, js=js)
    return Firing("0190aaaa-0000-7000-8000-000000000001/big-order", 3, rule,
                  {"id": "0190aaaa-0000-7000-8000-000000000001", "visitor_key": "cookie:c1",
                   "cookie_assigned": js is not None}, None)


def delivery(web, writer, metrics):
    settings = Settings(kafka_bootstrap="127.0.0.1:1", webhook_attempts=2, webhook_backoff_ms=1,
                        raw_partitions=4)
    return Delivery(settings, web, writer, lambda project: "secret", lambda f: None,
                    metrics.counts, TriggerWarnings(writer, 4, metrics.warnings),
                    metrics.failures)


@pytest.mark.parametrize(("web", "attempts", "reason"), [
    (FakeWeb(status=410), 1, "HTTP 410 after 1 attempt(s)"),
    (FakeWeb(status=503), 2, "HTTP 503 after 2 attempt(s)"),
    (FakeWeb(refused="an address that is not public"), 1, "not public"),
], ids=["gone", "down-after-retries", "address-refused"])
async def test_a_webhook_given_up_is_a_dead_letter_and_a_warning(web, attempts, reason):
    writer, metrics = FakeWriter(), TriggersMetrics(defaultdict(int))
    assert await delivery(web, writer, metrics).deliver(firing(), asyncio.Event())
    [(key, letter, _)] = writer.sent[topics.DEADLETTER]
    assert DeadLetter.from_json(letter).detail["delivery"] == firing().id
    [(key, value, partition)] = writer.sent[topics.WARNINGS]
    warning = IngestionWarning.from_json(value)
    assert (warning.kind, warning.project, warning.event_id) == (
        Kind.WEBHOOK_FAILED, "shop.example", "0190aaaa-0000-7000-8000-000000000001")
    assert reason in warning.reason and "big-order" in warning.reason
    assert partition == partition_for(b"shop.example", 4)
    series = prom.parse(metrics.render())
    assert prom.total(series, "trackpipe_triggers_webhook_failures_total") == attempts
    assert prom.total(series, "trackpipe_triggers_project_webhook_failures_total",
                      project="shop.example") == attempts
    assert prom.total(series, "trackpipe_triggers_dead_letters_total") == 1
    assert prom.total(series, "trackpipe_warnings_total", kind="webhook_failed") == 1


async def test_a_delivered_webhook_is_no_warning():
    writer, metrics = FakeWriter(), TriggersMetrics(defaultdict(int))
    assert await delivery(FakeWeb(200), writer, metrics).deliver(firing(), asyncio.Event())
    assert not writer.sent[topics.WARNINGS] and not writer.sent[topics.DEADLETTER]
    assert prom.total(prom.parse(metrics.render()),
                      "trackpipe_triggers_webhooks_delivered_total") == 1


async def test_a_js_action_for_a_visitor_that_cannot_come_back_is_a_dead_letter_warning():
    writer, metrics = FakeWriter(), TriggersMetrics(defaultdict(int))
    await delivery(FakeWeb(), writer, metrics).deliver(firing(webhook=None, js="alert(1)"),
                                                       asyncio.Event())
    [(_, value, _)] = writer.sent[topics.WARNINGS]
    assert IngestionWarning.from_json(value).kind == Kind.DEAD_LETTER


async def test_an_unreadable_action_is_warned_under_the_project_its_key_names():
    writer, metrics = FakeWriter(), TriggersMetrics(defaultdict(int))
    await TriggerWarnings(writer, 4, metrics.warnings).unreadable(
        b"shop.example\ncookie:c1", b"{not json", "JSONDecodeError('x')")
    [(key, value, _)] = writer.sent[topics.WARNINGS]
    warning = IngestionWarning.from_json(value)
    assert key == b"shop.example" and warning.kind == Kind.DEAD_LETTER
    assert "{not json" in warning.sample


async def test_the_metrics_page_is_served_and_a_taken_port_is_no_crash(unused_tcp_port):
    import httpx

    metrics = TriggersMetrics(defaultdict(int, {"delivered": 3}))
    runner = await serve(metrics, "127.0.0.1", unused_tcp_port)
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{unused_tcp_port}/metrics")).text
        assert "trackpipe_triggers_webhooks_delivered_total 3" in text
        assert await serve(metrics, "127.0.0.1", unused_tcp_port) is None  # taken
    finally:
        await runner.cleanup()
