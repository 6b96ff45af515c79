"""Each reason for a dead letter has its constructor, and the letters it makes are byte for
byte the ones the call sites built by hand before (outside consumers read these bytes)."""

import pytest

from schemas.deadletter import MAX_VALUE_BYTES, DeadLetter
from schemas.firing import Firing
from schemas.trigger import TriggerRule

EXC = ValueError("bad 'thing' é")
BIG = bytes(range(256)) * (MAX_VALUE_BYTES // 256 + 3)  # over the cut: value_bytes is said
FIRING = Firing("e1/r", 3, TriggerRule.build("shop", "r", "signup",
                                              webhook="https://h.example/x"),
                {"id": "e1", "project": "shop", "properties": {"plan": "é"}},
                {"profile": "p1", "properties": {}})

# (the constructor's letter, the letter as its call site built it by hand before)
CASES = {
    "record, a whole message (processors/worker.py)": (
        DeadLetter.for_record(EXC, "raw", 2, 17, b"k", b"v"),
        DeadLetter("record", f"{type(EXC).__name__}: {EXC}", "raw", 2, 17, key=b"k",
                   value=b"v")),
    "record, a keyless message": (
        DeadLetter.for_record(EXC, "raw", 2, 17, None, None),
        DeadLetter("record", f"{type(EXC).__name__}: {EXC}", "raw", 2, 17, key=None,
                   value=None)),
    "record, one of an envelope (processors/stages/batch.py)": (
        DeadLetter.for_record(EXC, "raw", 2, 17, b"k", BIG, index=4),
        DeadLetter("record", f"{type(EXC).__name__}: {EXC}", "raw", 2, 17, 4, b"k", BIG)),
    "output, a message (processors/outbound.py)": (
        DeadLetter.oversized_output("message", "actions", 5, b"k", BIG, 1000),
        DeadLetter("output", f"a {len(BIG)}-byte message is over the 1000-byte limit",
                   "actions", 5, key=b"k", value=BIG)),
    "output, a record of an envelope (processors/outbound.py)": (
        DeadLetter.oversized_output("record", "links", 5, None, BIG, 1000),
        DeadLetter("output", f"a {len(BIG)}-byte record is over the 1000-byte limit",
                   "links", 5, value=BIG)),
    "spool (gateway/publisher.py)": (
        DeadLetter.refused_spooled(EXC, "raw", b"v"),
        DeadLetter("spool", f"{type(EXC).__name__}: {EXC}", "raw", value=b"v")),
    "action (triggers)": (
        DeadLetter.unreadable_action(EXC, "actions", 1, 9, b"k", b"{"),
        DeadLetter("action", repr(EXC), "actions", 1, 9, key=b"k", value=b"{")),
    "trigger (triggers)": (
        DeadLetter.undelivered_firing(FIRING, "HTTP 500 after 4 attempt(s)", "firings"),
        DeadLetter("trigger", "HTTP 500 after 4 attempt(s)", "firings", FIRING.partition,
                   key=FIRING.id.encode(), detail={
                       "delivery": FIRING.id, "trigger": FIRING.rule.name,
                       "project": FIRING.rule.project, "webhook": FIRING.rule.webhook,
                       "action": FIRING.action, "profile": FIRING.profile})),
}


@pytest.mark.parametrize(("made", "by_hand"), CASES.values(), ids=CASES.keys())
def test_each_constructor_makes_the_bytes_its_call_site_made_by_hand(made, by_hand):
    assert made.to_json() == by_hand.to_json()
    if made.value is None or len(made.value) <= MAX_VALUE_BYTES:  # else it travels cut
        assert DeadLetter.from_json(made.to_json()) == made


def test_the_bytes_themselves_are_unchanged():
    """Frozen: what a letter's JSON was before the constructors, field order included."""
    assert DeadLetter.for_record(EXC, "raw", 2, 17, b"k", b"v", index=4).to_json() == (
        b'{"kind":"record","error":"ValueError: bad \'thing\' \xc3\xa9","topic":"raw",'
        b'"partition":2,"offset":17,"index":4,"key":"aw==","value":"dg=="}')
    assert DeadLetter.undelivered_firing(FIRING, "gone", "firings").to_json() == (
        b'{"kind":"trigger","error":"gone","topic":"firings","partition":3,"offset":null,'
        b'"index":null,"key":"ZTEvcg==","value":null,"delivery":"e1/r","trigger":"r",'
        b'"project":"shop","webhook":"https://h.example/x","action":{"id":"e1",'
        b'"project":"shop","properties":{"plan":"\xc3\xa9"}},"profile":{"profile":"p1",'
        b'"properties":{}}}')
    letter = DeadLetter.oversized_output("message", "actions", 5, None, BIG, 1000).to_json()
    assert letter.endswith(b',"value_bytes":%d}' % len(BIG))
