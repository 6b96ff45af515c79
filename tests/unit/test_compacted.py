"""A record of a compacted topic applied to a view of it: a tombstone pops, anything sets."""

import pytest

from runtime import compacted


@pytest.mark.parametrize(("before", "key", "value", "after"), [
    ({}, "a", 1, {"a": 1}),
    ({"a": 1}, "a", 2, {"a": 2}),
    ({"a": 1, "b": 2}, "a", None, {"b": 2}),
    ({"b": 2}, "a", None, {"b": 2}),             # a tombstone of a key never seen: no error
    ({}, "a", 0, {"a": 0}),                      # a falsy value is a value, not a tombstone
    ({}, "a", b"", {"a": b""}),                  # so is an empty one
], ids=["new", "replaced", "tombstone", "tombstone-unknown", "zero", "empty-bytes"])
def test_a_tombstone_pops_the_key_and_anything_else_sets_it(before, key, value, after):
    view = dict(before)
    compacted.apply(view, key, value)
    assert view == after


def test_the_last_record_of_a_key_wins_as_compaction_keeps_it():
    view: dict[str, int] = {}
    for key, value in [("a", 1), ("b", 2), ("a", None), ("b", 3), ("a", 4)]:
        compacted.apply(view, key, value)
    assert view == {"a": 4, "b": 3}
