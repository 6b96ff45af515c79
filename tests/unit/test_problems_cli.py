"""The pure parts of ``trackpipe warnings`` and ``trackpipe deadletters`` (``cli.problems``):
reading ``--since`` and a letter's id, what a letter is about, and what re-sending it would
send. The commands themselves run against a real broker in test_operator_views."""

from __future__ import annotations

import argparse
from collections import Counter
from types import SimpleNamespace

import pytest

from schemas import envelope
from schemas.deadletter import DeadLetter
from schemas.firing import Firing
from schemas.raw import RawRecord
from schemas.trigger import TriggerRule
from trackpipe.cli.common import CliError
from trackpipe.cli.problems import (
    headline,
    letter_id,
    letter_project,
    letter_row,
    resend_plan,
    since_ms,
)

NOW = 1_800_000_000_000
RAW = "t.raw"
RECORD = RawRecord(id="0190aaaa-0000-7000-8000-000000000001", received_ms=NOW, endpoint="ce",
                   project="shop.example", ip="192.0.2.1", query=b"event=pv&cookie=c1",
                   visitor_key="cookie:c1")


@pytest.mark.parametrize(("text", "expected"), [
    (None, None),
    ("30m", NOW - 30 * 60_000),
    ("2h", NOW - 2 * 3_600_000),
    ("1d12h", NOW - 36 * 3_600_000),
    ("45s", NOW - 45_000),
    ("2027-01-15", 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000),
    ("2027-01-15T08:00:00+01:00", 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000
     + 7 * 3_600_000),
], ids=["none", "minutes", "hours", "days-and-hours", "seconds", "date", "date-time-offset"])
def test_since_is_a_duration_back_or_a_time(text, expected):
    assert since_ms(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "3w", "1h30", "-2h"])
def test_since_that_is_neither_is_a_one_line_error(text):
    with pytest.raises(CliError, match="duration like 30m"):
        since_ms(text, NOW)


def test_a_letter_id_is_partition_and_offset():
    assert letter_id("3:1042") == (3, 1042)
    with pytest.raises(argparse.ArgumentTypeError):
        letter_id("3-1042")


def firing(webhook="https://hooks.example/x", js=None):
    rule = TriggerRule.build("shop.example", "big-order", "buy", webhook=webhook, js=js)
    return Firing(f"{RECORD.id}/big-order", 2, rule, {"id": RECORD.id}, None)


def record_letter(value, topic=RAW, index=0, kind="record"):
    if kind == "spool":
        return DeadLetter.refused_spooled(ValueError("too large"), topic, value)
    return DeadLetter.for_record(ValueError("bad"), topic, 1, 7, None, value, index)


@pytest.mark.parametrize(("letter", "what", "refused"), [
    (record_letter(RECORD.to_bytes()), "record", None),
    (record_letter(RECORD.to_bytes(), kind="spool"), "record", None),
    (record_letter(envelope.pack([RECORD.to_bytes()]), index=None), "envelope", None),
    (DeadLetter.undelivered_firing(firing(), "HTTP 500", "t.firings"), "firing", None),
    (DeadLetter.undelivered_firing(firing(webhook=None, js="x()"), "no visitor", "t.firings"),
     None, "JS action"),
    (record_letter(b"\x91\x01"), None, "not a raw record"),
    (record_letter(b"link", topic="t.links"), None, "only raw records and firings"),
    (DeadLetter.oversized_output("message", "t.actions", 0, None, b"x", 1), None,
     "kind output"),
    (DeadLetter.unreadable_action(ValueError("x"), "t.actions", 0, 1, b"k", b"v"), None,
     "kind action"),
], ids=["raw-record", "spooled-record", "raw-envelope", "webhook-firing", "js-firing",
        "unreadable-record", "internal-record", "oversized-output", "unreadable-action"])
def test_what_resending_a_letter_sends(letter, what, refused):
    plan = resend_plan(DeadLetter.from_json(letter.to_json()), RAW)
    assert plan.what == (what or "")
    assert plan.refusal is None if refused is None else refused in plan.refusal
    if what == "record":
        assert [RawRecord.from_obj(item) for item in envelope.unpack(plan.value)] == [RECORD]
    if what == "envelope":
        assert plan.partition == 1


def test_a_letter_whose_input_was_cut_cannot_be_resent():
    plan = resend_plan(record_letter(RECORD.to_bytes()), RAW, cut=True)
    assert "256 KiB" in plan.refusal


@pytest.mark.parametrize(("letter", "project"), [
    (record_letter(RECORD.to_bytes()), "shop.example"),
    (DeadLetter.undelivered_firing(firing(), "HTTP 500", "t.firings"), "shop.example"),
    (DeadLetter.unreadable_action(ValueError("x"), "t.actions", 0, 1, b"a.example\ncookie:c",
                                  b"v"), "a.example"),
    (record_letter(b"junk"), ""),
], ids=["raw-record", "firing", "action", "unreadable"])
def test_the_project_a_letter_is_about(letter, project):
    assert letter_project(DeadLetter.from_json(letter.to_json()), RAW) == project


def test_a_listing_row_names_the_letter_by_its_place_in_the_topic():
    letter = DeadLetter.undelivered_firing(firing(), "HTTP 410 after 1 attempt(s)", "t.firings")
    row = letter_row(SimpleNamespace(partition=2, offset=9, timestamp=NOW,
                                     value=letter.to_json()), RAW)
    assert row == {"id": "2:9", "time_ms": NOW, "kind": "trigger", "project": "shop.example",
                   "reason": "HTTP 410 after 1 attempt(s)",
                   "what": f"firing {RECORD.id}/big-order to https://hooks.example/x",
                   "resendable": True, "why_not": None}
    assert letter_row(SimpleNamespace(partition=0, offset=0, timestamp=NOW, value=b"{"),
                      RAW) is None


def test_the_headline_counts_each_kind_and_escapes_the_project():
    line = headline("warnings", "bad\x1bname", None, 3, Counter({"a": 2, "b": 1}))
    assert line == "3 warnings of bad\\x1bname: a 2, b 1"
