import pytest

from processors.quotas import add_count, state
from schemas.quota import QuotaState, month_of


def test_counts_of_partitions_add_up_and_late_reports_change_nothing():
    total = add_count(None, "2026-11", 0, 3)
    total = add_count(total, "2026-11", 5, 2)
    assert state("p", total, 5) == QuotaState("p", "2026-11", 5, 5)
    assert add_count(total, "2026-11", 5, 1) is None      # older report of partition 5
    assert add_count(total, "2026-11", 5, 2) is None      # the same report again
    assert add_count(total, "2026-10", 0, 99) is None     # last month's straggler


def test_a_new_month_starts_from_zero():
    total = add_count(add_count(None, "2026-11", 0, 50), "2026-12", 3, 1)
    assert total == {"month": "2026-12", "counts": {"3": 1}}


@pytest.mark.parametrize(("count", "quota", "over"), [
    (4, 5, False), (5, 5, True), (6, 5, True), (10**6, None, False), (0, 0, True)])
def test_over(count, quota, over):
    assert QuotaState("p", "2026-11", count, quota).over is over


def test_a_state_of_another_month_is_not_over_now():
    s = QuotaState("p", "2026-10", 10, 5)
    assert s.over_in("2026-10") and not s.over_in("2026-11")
    assert QuotaState.from_bytes(s.to_bytes()) == s


def test_month_of():
    assert month_of(1_795_776_000_000) == "2026-11"
