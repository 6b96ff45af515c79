import pytest

from processors.dedupe import DEDUPE_WINDOW_MS, SWEEP_EVERY_MS, expired, sweep_due

NOW = 10 * DEDUPE_WINDOW_MS


def test_only_old_entries_of_the_ticking_partition_are_forgotten():
    entries = [
        (b"old-p1", [NOW - DEDUPE_WINDOW_MS - 1, 1]),
        (b"edge-p1", [NOW - DEDUPE_WINDOW_MS, 1]),
        (b"new-p1", [NOW - 1000, 1]),
        (b"old-p2", [NOW - DEDUPE_WINDOW_MS - 1, 2]),
        (b"legacy", 12345),          # an unexpected value is kept, never crashes a sweep
    ]
    assert list(expired(entries, 1, NOW)) == [b"old-p1"]
    assert list(expired(entries, 2, NOW)) == [b"old-p2"]


def test_the_window_is_at_least_the_24_hours_of_the_contract():
    assert DEDUPE_WINDOW_MS >= 24 * 3_600_000


@pytest.mark.parametrize(("last", "now", "due"), [
    (None, 0, True), (0, SWEEP_EVERY_MS - 1, False), (0, SWEEP_EVERY_MS, True)])
def test_sweep_due(last, now, due):
    assert sweep_due(last, now) is due
