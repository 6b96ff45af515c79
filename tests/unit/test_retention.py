"""Which receipt days are past a project's retention (logstore.retention)."""

import pytest

from logstore.retention import cutoff_day, expired_days

NOW = 1_800_000_000_000  # 2027-01-15T08:00Z


@pytest.mark.parametrize(("retention", "first_kept"), [
    (1, "2027-01-15"), (2, "2027-01-14"), (30, "2026-12-17"), (365, "2026-01-16")])
def test_the_first_day_kept(retention, first_kept):
    assert cutoff_day(NOW, retention) == first_kept


def test_only_whole_days_past_retention_and_only_day_names_expire():
    days = ["2027-01-13", "2027-01-14", "2027-01-15", "_index", "_timeline", "2027-1-1",
            "../2027-01-01", "2026-12-31"]
    assert expired_days(days, NOW, 2) == ["2026-12-31", "2027-01-13"]
    assert expired_days(days, NOW, 365) == []
