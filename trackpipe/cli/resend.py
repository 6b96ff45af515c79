"""``trackpipe deadletters --resend ID``: a dead letter sent again once its cause is fixed.

What it sends is ``problems.resend_plan``'s. A raw record goes to the raw topic in an envelope
of its own, to its key's partition, as a gateway would have sent it; the processors then
handle it like any record, and drop it if its visitor remembers its event id (its last 256 of
those received within 48 h of its newest request: ``processors.dedupe``), so a record re-sent
twice, or re-sent after it was handled, within that window is logged once. The letter keeps
its receipt time, so an old letter re-sent twice may be logged twice: re-send it once.

A firing is delivered by the triggers service's own code (``triggers.delivery``: the address
guard, the project's signing secret, one attempt) to the webhook its trigger has *now* (a
fixed URL is the usual fix), with its delivery id unchanged, which receivers dedupe on; if it
fails again, it is dead-lettered again, with a new warning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer

from runtime import registry
from runtime.recent import read_one
from runtime.settings import Settings
from runtime.warning_budget import WarningBudget
from schemas import topics
from schemas.deadletter import DeadLetter
from schemas.firing import Firing
from schemas.partitioning import partition_for
from schemas.topics import MAX_MESSAGE_BYTES
from schemas.trigger import TriggerRule
from trackpipe.cli.common import CliError
from trackpipe.cli.problems import Plan, resend_plan, was_cut
from triggers.addresses import WebClient
from triggers.delivery import Delivery
from triggers.warned import TriggerWarnings
from triggers.writer import Writer


def resend(settings: Settings, ids: list[tuple[int, int]]) -> int:
    """Re-send each letter; 0 when every one went, else 1 (each says why on stderr)."""
    failed = 0
    for partition, offset in ids:
        try:
            print(asyncio.run(_resend_one(settings, partition, offset)))
        except CliError as exc:
            print(f"trackpipe: {partition}:{offset}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


async def _resend_one(settings: Settings, partition: int, offset: int) -> str:
    found = await read_one(settings.bootstrap, settings.topic(topics.DEADLETTER), partition,
                           offset)
    if found is None:
        raise CliError("the dead-letter topic holds no such letter (gone past its retention?)")
    try:
        letter = DeadLetter.from_json(found.value)
    except Exception:  # written by something else, or a newer version
        raise CliError("not a dead letter this version reads") from None
    plan = resend_plan(letter, settings.topic(topics.RAW), was_cut(found.value))
    if plan.refusal is not None:
        raise CliError(f"cannot be re-sent: {plan.refusal}")
    if plan.what == "firing":
        return await _deliver_again(settings, letter, plan)
    return await _publish_again(settings, plan)


async def _publish_again(settings: Settings, plan: Plan) -> str:
    topic = settings.topic(topics.RAW)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all",
                                enable_idempotence=True, max_request_size=MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        partition = plan.partition
        if plan.record is not None:
            count = len(await producer.partitions_for(topic))
            partition = partition_for(plan.record.kafka_key(), count)
        await producer.send_and_wait(topic, plan.value, partition=partition)
    finally:
        await producer.stop()
    what = (f"record {plan.record.id} of {plan.record.project}" if plan.record is not None
            else "the envelope")
    return (f"re-sent {what} to {topic}[{partition}]: the processors handle it again, unless "
            "a visitor remembers its event id (then it is a duplicate, dropped)")


class _Writer(Writer):
    """The triggers' writer, keeping what it dead-letters (so the command can say why)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.letters: list[DeadLetter] = []

    async def send(self, name: str, key: bytes | None, value: bytes | None,
                   partition: int | None = None) -> None:
        if name == topics.DEADLETTER and value is not None:
            self.letters.append(DeadLetter.from_json(value))
        await super().send(name, key, value, partition)


async def _deliver_again(settings: Settings, letter: DeadLetter, plan: Plan) -> str:
    detail = letter.detail
    project, name = str(detail.get("project")), str(detail.get("trigger"))
    rules = await registry.read_all(settings.bootstrap, settings.topic(topics.TRIGGERS),
                                    TriggerRule.from_bytes)
    rule = rules.get(f"{project}\n{name}")
    if rule is None or rule.webhook is None:
        raise CliError(f"trigger {name} of {project} no longer exists (or no longer posts to "
                       "a webhook): nothing to send it to")
    record = (await registry.read_all(settings.bootstrap,
                                      settings.topic(topics.PROJECTS))).get(project)
    secret = record.webhook_secret if record is not None else None
    if not secret:
        raise CliError(f"project {project} has no webhook signing secret: `trackpipe "
                       f"projects set {project} --rotate-webhook-secret` makes one")
    firing = Firing(str(detail["delivery"]), plan.partition or 0, rule,
                    detail.get("action") or {}, detail.get("profile"))
    counts: defaultdict[str, int] = defaultdict(int)
    writer = _Writer(settings.bootstrap, {n: settings.topic(n) for n in (
        topics.FIRINGS, topics.DEADLETTER, topics.WARNINGS, topics.JS_ACTIONS)}, counts)
    web = WebClient(settings.webhook_networks, settings.webhook_timeout_ms / 1000)
    await writer.start()
    await web.start()
    try:
        once = dataclasses.replace(settings, webhook_attempts=1)
        delivery = Delivery(once, web, writer, lambda _: secret, lambda _: None, counts,
                            TriggerWarnings(writer, settings.raw_partitions, WarningBudget()))
        await delivery.deliver(firing, asyncio.Event())
    finally:
        await web.close()
        await writer.stop()
    if writer.letters:
        raise CliError(f"firing {firing.id} failed again ({writer.letters[-1].error}); "
                       "dead-lettered again")
    return f"re-sent firing {firing.id} to {rule.webhook}: delivered"
