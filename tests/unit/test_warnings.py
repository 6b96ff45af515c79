"""Ingestion warnings: the record (``schemas.warning``), the budget that keeps a flood to counts
(``runtime.warning_budget``), the words of a changed timestamp (``processors.timestamps``), and
what the stages warn about (``processors.warn`` through ``processors.pipeline.Stages``)."""

from __future__ import annotations

import msgpack
import pytest

from processors import identity
from processors.metrics import WorkerMetrics, lag_seconds
from processors.pipeline import Stages
from processors.timestamps import FUTURE_TOLERANCE_MS, adjustment, event_time
from runtime import prometheus as prom
from runtime.settings import Settings
from runtime.warning_budget import MINUTE_MS, WarningBudget
from schemas import envelope
from schemas.identity import Link
from schemas.raw import RawRecord
from schemas.warning import SAMPLE_CHARS, IngestionWarning, Kind, request_sample, sample

NOW = 1_800_000_000_000


# -- the record ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(Kind), ids=[k.value for k in Kind])
def test_a_warning_of_every_kind_reads_back_as_written(kind):
    warning = IngestionWarning(project="shop.example", kind=kind, reason="why", at_ms=NOW,
                               service="gateway", event_id="e1", sample="ce event=pv",
                               unrecorded=3)
    assert IngestionWarning.from_json(warning.to_json()) == warning
    assert warning.key == b"shop.example"


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("a\rb\nc", "a\\x0db\\x0ac"),
    ("right\u202eleft", "right\\u202eleft"),
    ("\ud800", "\\ud800"),
    ("x" * (SAMPLE_CHARS + 5), "x" * SAMPLE_CHARS + f"… ({SAMPLE_CHARS + 5} chars)"),
], ids=["plain", "escape-sequence", "line-breaks", "bidi-override", "surrogate", "cut"])
def test_a_sample_is_cut_and_cannot_steer_a_terminal(text, expected):
    assert sample(text) == expected


@pytest.mark.parametrize("query, form", [
    (b"ip=203.0.113.7&event=pv", {}),
    (b"event=pv&ip=2001%3Adb8%3A%3A1&cookie=c", {}),
    (b"event=pv;ip=203.0.113.7", {}),
    (b"event=pv", {"ip": "203.0.113.7", "cv_name": "x"}),
    ("event=pv&ip=203.0.113.7", None),
])
def test_a_request_sample_never_carries_a_sent_address(query, form):
    made = request_sample("ce", query, form)
    assert "203.0.113" not in made and "2001" not in made and "ip=(withheld)" in made
    assert "event=pv" in made


def test_only_the_ip_parameter_is_withheld():
    made = request_sample("ce", b"zip=12345&vip=1&ip_note=x", {"tip": "5"})
    assert made == "ce zip=12345&vip=1&ip_note=x tip=5"


def test_a_request_sample_costs_no_more_than_its_cut_whatever_the_body():
    made = request_sample("ce", b"event=pv&cookie=c1", {"cv_name": "x" * 1_000_000})
    assert made.startswith("ce event=pv&cookie=c1 cv_name=xxx") and len(made) <= SAMPLE_CHARS + 2


# -- the budget ----------------------------------------------------------------------------------

def test_past_its_budget_a_kind_is_counted_and_the_next_record_says_how_many_were_left_out():
    budget = WarningBudget(per_minute=2)
    at = NOW - NOW % MINUTE_MS
    assert [budget.admit("a", Kind.OVER_QUOTA, at + i) for i in range(5)] == [0, 0, None,
                                                                              None, None]
    assert budget.admit("a", Kind.EXCLUDED, at) == 0  # another kind has its own budget
    assert budget.admit("b", Kind.OVER_QUOTA, at) == 0  # and another project
    assert budget.admit("a", Kind.OVER_QUOTA, at + MINUTE_MS) == 3  # a new minute
    assert budget.noticed[("a", Kind.OVER_QUOTA)] == 6
    assert budget.unrecorded[Kind.OVER_QUOTA] == 3


def test_made_up_project_names_share_one_budget_and_one_series():
    budget = WarningBudget(per_minute=3)
    recorded = [budget.admit(f"made-up-{i}", Kind.UNKNOWN_PROJECT, NOW) for i in range(1000)]
    assert sum(r is not None for r in recorded) == 3
    series = prom.parse("\n".join(budget.lines()))
    assert series == {
        ("trackpipe_warnings_total", frozenset({("project", ""), ("kind", "unknown_project")})):
            1000.0,
        ("trackpipe_warnings_unrecorded_total", frozenset({("kind", "unknown_project")})):
            997.0}


def test_the_budget_forgets_its_oldest_minute_rather_than_grow():
    budget = WarningBudget(per_minute=1, max_keys=10)
    for i in range(25):
        assert budget.admit(f"p{i}", Kind.EXCLUDED, NOW + i * MINUTE_MS) == 0
    assert len(budget._windows) <= 10  # noqa: SLF001 - the bound is what is tested


# -- timestamps ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("timestamp", "said"), [
    (None, None),
    ("", None),
    ("1492030800000", None),
    (str(NOW + FUTURE_TOLERANCE_MS), None),
    ("abc", "not a number"),
    (True, "not a number"),
    ("-5", "not a time after 1970"),
    ("253402300800000", "not a time after 1970"),
    (str(NOW + 3_600_000), "3600 s ahead of its receipt: kept, flagged future"),
], ids=["absent", "empty", "past", "within-skew", "text", "bool", "negative", "year-10000",
        "future"])
def test_why_an_event_time_is_not_the_timestamp_sent(timestamp, said):
    found = adjustment(timestamp, event_time(timestamp, NOW), NOW)
    assert found == said if said is None else said in found


def test_an_email_owned_by_a_profile_with_another_id_is_a_refused_merge():
    owner = identity.IdentityState("p-other-id", has_id=True)
    link = Link("email:ada@example.com", "p-mine", "cookie:c1", True, "shop.example", NOW)
    decision = identity.resolve_link(owner, link)
    assert decision.merge is None and "belongs to a profile with another id" in decision.refused
    assert identity.resolve_link(None, link).refused is None


# -- the stages ----------------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.sent = []

    async def send(self, topic, partition, messages):
        self.sent += [(topic, partition, key, value) for key, value in messages]

    def warnings(self):
        return [IngestionWarning.from_json(value) for topic, _, _, value in self.sent
                if topic == "trackpipe.warnings"]


@pytest.fixture
def stages(tmp_path):
    made = Stages(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path, raw_partitions=4),
                  Recorder())
    yield made
    made.close()


def raw(n, cookie="c1", project="shop.example", **params):
    query = "&".join(f"{k}={v}" for k, v in {"event": "pv", "cookie": cookie, **params}.items())
    return RawRecord(id=f"00000000-0000-7000-8000-{n:012d}", received_ms=NOW + n,
                     endpoint="ce", project=project, ip="192.0.2.1", query=query.encode(),
                     visitor_key=f"cookie:{cookie}")


async def warned(stages, *records, offset=0):
    stages.visitors.handle_raw(0, offset, envelope.pack([r.to_bytes() for r in records]))
    await stages.commit()
    return stages.outbound.transport.warnings()


async def test_a_replaced_and_a_future_timestamp_are_warned_with_the_event_id(stages):
    found = await warned(stages, raw(1, timestamp="soon"), raw(2, timestamp=NOW + 86_400_000),
                         raw(3, timestamp=NOW - 1000), raw(4))
    assert [(w.kind, w.event_id) for w in found] == [
        (Kind.TIMESTAMP_REPLACED, raw(1).id), (Kind.TIMESTAMP_FUTURE, raw(2).id)]
    assert found[0].project == "shop.example" and "timestamp=soon" in found[0].sample
    assert found[0].service == "processors" and found[0].at_ms == NOW + 1


async def test_a_device_that_shows_a_second_id_is_a_refused_merge(stages):
    found = await warned(stages, raw(1, cv_id="u1"), raw(2, cv_id="u2"), raw(3, cv_id="u2"))
    assert [(w.kind, w.event_id) for w in found] == [(Kind.MERGE_REFUSED, raw(2).id)]
    assert "two ids never merge" in found[0].reason


async def test_an_email_owned_by_another_id_is_warned_by_the_identities_stage(stages):
    owner = Link("email:ada@example.com", "p-first", "cookie:a", True, "shop.example", NOW)
    asker = Link("email:ada@example.com", "p-second", "cookie:b", True, "shop.example", NOW)
    for link in (owner, asker):
        stages.identities.handle_link(0, link.to_obj())
    await stages.commit()
    [found] = stages.outbound.transport.warnings()
    assert found.kind == Kind.MERGE_REFUSED and found.sample == "cookie:b → email:ada@example.com"


async def test_a_dead_lettered_record_is_warned_under_its_project(stages):
    found = await warned(stages, raw(1, project="Not A Name!"), raw(2))
    assert [(w.kind, w.project, w.event_id) for w in found] == [(Kind.DEAD_LETTER, "",
                                                                 raw(1).id)]
    stages.visitors.handle_raw(0, 1, envelope.pack([msgpack.packb({"v": 1, "id": "x"})]))
    await stages.commit()
    assert stages.outbound.transport.warnings()[-1].reason.startswith("trackpipe.raw[0]@1#0: ")


def test_a_message_the_guard_dead_letters_warns_once_a_record_of_a_raw_envelope(stages):
    value = envelope.pack([raw(1).to_bytes(), raw(2, cookie="c2").to_bytes()])
    made = stages.visitors.warner.warn_dead_message(value, RuntimeError("bug"), "raw[0]@5",
                                                    NOW, raw=True)
    assert [IngestionWarning.from_json(v).event_id for _, _, v in made] == [raw(1).id,
                                                                             raw(2).id]
    once = stages.visitors.warner.warn_dead_message(value, RuntimeError("bug"), "links[0]@5",
                                                    NOW, raw=False)
    assert [IngestionWarning.from_json(v).project for _, _, v in once] == [""]


async def test_warnings_past_the_budget_are_counted_in_the_worker_metrics(stages):
    records = [raw(n, timestamp="bad") for n in range(30)]
    found = await warned(stages, *records)
    assert len(found) == 20
    series = prom.parse(stages.metrics.render({}))
    assert prom.total(series, "trackpipe_warnings_total", kind="timestamp_replaced") == 30
    assert prom.total(series, "trackpipe_warnings_unrecorded_total") == 10


# -- lag in seconds ------------------------------------------------------------------------------

@pytest.mark.parametrize(("lag", "newest", "expected"), [
    ({0: 0}, {0: NOW - 5000}, {0: 0.0}),
    ({0: 3}, {0: NOW - 45_000}, {0: 45.0}),
    ({1: 2}, {}, {1: 60.0}),
    ({0: 1}, {0: NOW + 10}, {0: 0.0}),
], ids=["caught-up", "behind", "never-handled", "clock-skew"])
def test_lag_in_seconds_is_the_age_of_the_newest_record_handled_while_records_wait(
        lag, newest, expected):
    assert lag_seconds(lag, newest, NOW, since_ms=NOW - 60_000) == expected


def test_the_worker_exposes_lag_in_seconds_per_partition():
    text = WorkerMetrics().render({0: 4}, {0: 31.5})
    assert 'trackpipe_worker_consumer_lag_seconds{partition="0"} 31.5' in text


def test_a_record_is_made_and_its_sample_asked_only_within_the_budget():
    budget = WarningBudget(per_minute=1)
    asked = []

    def made() -> str:
        asked.append(1)
        return "the sample"

    at = NOW - NOW % MINUTE_MS
    first = budget.record("processors", "a", Kind.DEAD_LETTER, "why", at, made, "e1")
    assert (first.sample, first.event_id, first.unrecorded) == ("the sample", "e1", 0)
    assert budget.record("processors", "a", Kind.DEAD_LETTER, "why", at + 1, made) is None
    assert len(asked) == 1  # the flood cost a counter, not a sample
    later = budget.record("processors", "a", Kind.DEAD_LETTER, "why", at + MINUTE_MS, made)
    assert later.unrecorded == 1
