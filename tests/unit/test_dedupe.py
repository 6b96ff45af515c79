"""Which event ids a visitor remembers (processors.dedupe)."""

from processors.dedupe import DEDUPE_WINDOW_MS, MAX_REMEMBERED, remember

NOW = 10 * DEDUPE_WINDOW_MS


def test_an_id_is_remembered_and_old_ones_are_forgotten():
    seen = {"old": NOW - DEDUPE_WINDOW_MS - 1, "edge": NOW - DEDUPE_WINDOW_MS, "new": NOW - 1}
    assert remember(seen, "now", NOW) == {"edge": NOW - DEDUPE_WINDOW_MS, "new": NOW - 1,
                                          "now": NOW}
    assert "old" in seen  # the given dict is left alone


def test_at_most_the_newest_ids_are_kept():
    seen: dict[str, int] = {}
    for n in range(MAX_REMEMBERED + 10):
        seen = remember(seen, f"e{n}", NOW + n)
    assert len(seen) == MAX_REMEMBERED
    assert "e9" not in seen and "e10" in seen and f"e{MAX_REMEMBERED + 9}" in seen


def test_the_window_is_at_least_the_24_hours_of_the_contract():
    assert DEDUPE_WINDOW_MS >= 24 * 3_600_000
