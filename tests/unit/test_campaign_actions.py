"""The campaign an action carries, as the processors build it from a whole request (a simulated
worker, no broker): the request's own ``utm_*`` parameters fill it, on any action, before those
inside a pageview's ``ce_url`` (``processors.campaigns``)."""

from __future__ import annotations

import asyncio
import json

from runtime.settings import Settings
from schemas import envelope, topics
from schemas.partitioning import partition_for
from schemas.raw import RawRecord
from tests.unit.simulation import PARTITIONS, Log, SimulatedWorker

RECEIVED_MS = 1_800_000_000_000


def actions_of(tmp_path, *queries: str) -> dict[str, dict]:
    """Each request's action properties, by event name (one visitor sends them all)."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path,
                        raw_partitions=PARTITIONS)
    records = [RawRecord(id=f"00000000-0000-7000-8000-{n:012d}", received_ms=RECEIVED_MS + n,
                         endpoint="ce", project="shop.example", ip="198.51.100.1",
                         query=query.encode(), visitor_key="cookie:c1")
               for n, query in enumerate(queries)]
    log = Log()
    partition = partition_for(records[0].kafka_key(), PARTITIONS)
    log.append(settings.topic(topics.RAW), partition,
               [(None, envelope.pack([r.to_bytes() for r in records]))])
    worker = SimulatedWorker(settings, log)
    try:
        asyncio.run(worker.run())
    finally:
        worker.stages.close()
    actions = [json.loads(value) for (topic, _), messages in log.topics.items()
               if topic == settings.topic(topics.ACTIONS) for _, value in messages]
    return {action["event"]: action["properties"] for action in actions}


def test_the_requests_own_campaign_parameters_fill_the_action_before_its_url(tmp_path):
    found = actions_of(
        tmp_path,
        "event=pv&cookie=c1&utm_campaign=server&ce_url=%2Fp%3Futm_campaign%3Dpage"
        "%26utm_source%3Dnews",
        "event=purchase&cookie=c1&ce_amount=10&utm_source=mail&woo_medium=email",
        "event=signup&cookie=c1&ce_campaign_name=explicit&utm_campaign=ignored")
    assert found["pv"]["campaign_name"] == "server"      # the request's own first
    assert found["pv"]["campaign_source"] == "news"      # what it lacks, from the page URL
    assert (found["purchase"]["campaign_source"], found["purchase"]["campaign_medium"]) == (
        "mail", "email")                                 # any action, not pageviews only
    assert found["signup"] == {"campaign_name": "explicit"}
