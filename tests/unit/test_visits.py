import pytest

from processors.visits import (
    DEFAULT_TIMEOUT_MS,
    MAX_VISIT_MS,
    Visit,
    is_expired,
    next_visit,
    timeout_ms,
)


@pytest.mark.parametrize(("value", "expected"), [
    (None, DEFAULT_TIMEOUT_MS), ("", DEFAULT_TIMEOUT_MS), ("abc", DEFAULT_TIMEOUT_MS),
    ("0", DEFAULT_TIMEOUT_MS), ("-10", DEFAULT_TIMEOUT_MS), ("nan", DEFAULT_TIMEOUT_MS),
    ("300", 300_000), (999, 999_000), ("1000", 1000), ("600000", 600_000), (1.5, 1500),
], ids=["absent", "empty", "text", "zero", "negative", "nan", "seconds", "999-seconds",
        "1000-ms", "ms", "fraction-of-second"])
def test_timeout_ms(value, expected):
    assert timeout_ms(value) == expected


def open_visit(**overrides):
    values = dict(id="v1", start_ms=0, last_ms=0, deadline_ms=30_000, actions=1,
                  properties={"a": 1})
    values.update(overrides)
    return Visit(**values)


def test_an_action_opens_a_visit():
    d = next_visit(None, 1000, 30_000, is_action=True, new_visit_id="v1",
                   properties={"landing": "/"})
    assert d.started and d.ended is None
    assert d.visit == Visit("v1", 1000, 1000, 31_000, 1, {"landing": "/"})


def test_a_ping_without_a_visit_opens_nothing():
    d = next_visit(None, 1000, 30_000, is_action=False, new_visit_id="v")
    assert (d.visit, d.ended, d.started) == (None, None, False)


@pytest.mark.parametrize(("is_action", "actions"), [(True, 2), (False, 1)],
                         ids=["action", "ping"])
def test_activity_before_the_deadline_extends_the_visit(is_action, actions):
    d = next_visit(open_visit(), 20_000, 30_000, is_action=is_action, new_visit_id="v2",
                   properties={"b": 2})
    assert not d.started and d.ended is None
    assert (d.visit.id, d.visit.deadline_ms, d.visit.actions, d.visit.properties) == (
        "v1", 50_000, actions, {"a": 1, "b": 2})


def test_a_shorter_timeout_never_pulls_the_deadline_in():
    d = next_visit(open_visit(deadline_ms=100_000), 10_000, 1000, is_action=True,
                   new_visit_id="v2")
    assert d.visit.deadline_ms == 100_000


def test_an_action_after_the_deadline_ends_the_old_visit_and_starts_a_new_one():
    old = open_visit()
    d = next_visit(old, 30_000, 30_000, is_action=True, new_visit_id="v2")
    assert d.ended == old and d.started and d.visit.id == "v2" and d.visit.start_ms == 30_000


def test_a_ping_after_the_deadline_only_ends_the_old_visit():
    old = open_visit()
    d = next_visit(old, 45_000, 30_000, is_action=False, new_visit_id="v2")
    assert (d.ended, d.visit, d.started) == (old, None, False)


def test_a_visit_is_capped_at_24_hours():
    visit = open_visit(deadline_ms=MAX_VISIT_MS - 1000)
    d = next_visit(visit, MAX_VISIT_MS - 2000, 600_000, is_action=True, new_visit_id="v2")
    assert d.visit.deadline_ms == MAX_VISIT_MS
    assert is_expired(d.visit, MAX_VISIT_MS) and not is_expired(d.visit, MAX_VISIT_MS - 1)


def test_late_arrival_never_moves_last_backwards():
    d = next_visit(open_visit(last_ms=20_000, deadline_ms=50_000), 10_000, 30_000,
                   is_action=True, new_visit_id="v2")
    assert d.visit.last_ms == 20_000
