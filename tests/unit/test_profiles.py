from processors.profiles import apply_update, fold, new_profile, shown
from schemas.profile import ProfileUpdate, change_from_obj


def update(at, origin=None, via="", **request):
    """The update of one request at event time ``at``."""
    made = ProfileUpdate("shop", "p1", origin, via)
    made.add(at, **request)
    return made


def test_one_update_folds_the_requests_of_an_envelope_like_applying_them_one_by_one():
    requests = [(200, {"cookie": "c1", "properties": {"plan": "pro"}, "actions": 1,
                       "visits": 1}),
                (100, {"cookie": "c1", "email": "a@x", "properties": {"plan": "free",
                                                                      "name": "Rio"}}),
                (300, {"id": "u1", "properties": {"name": "Rio B."}, "actions": 1})]
    one_by_one = new_profile("shop", "p1")
    folded = ProfileUpdate("shop", "p1", [0, 1])
    for at, request in requests:
        one_by_one = apply_update(one_by_one, update(at, **request))
        folded.add(at, **request)
    at_once = apply_update(new_profile("shop", "p1"), folded)
    assert {k: v for k, v in at_once.items() if k != "applied"} == {
        k: v for k, v in one_by_one.items() if k != "applied"}
    assert change_from_obj(folded.to_obj()) == folded  # and it travels as it is


def test_properties_are_last_write_wins_by_event_time():
    p = new_profile("shop", "p1")
    p = apply_update(p, update(200, properties={"plan": "pro", "name": "Rio"}))
    p = apply_update(p, update(100, properties={"plan": "free"}))   # late: older event
    p = apply_update(p, update(300, properties={"name": "Rio B."}))
    assert shown(p)["properties"] == {"plan": "pro", "name": "Rio B."}
    assert (p["first_seen_ms"], p["last_seen_ms"]) == (100, 300)


def test_identifiers_accumulate_once_and_counts_add_up():
    p = new_profile("shop", "p1")
    for at in (1, 2):
        p = apply_update(p, update(at, cookie="c1", email="a@x", actions=1, visits=at - 1))
    p = apply_update(p, update(3, cookie="c2", id="u1"))
    assert (p["cookies"], p["emails"], p["ids"]) == (["c1", "c2"], ["a@x"], ["u1"])
    assert (p["actions"], p["visits"]) == (2, 1)


def test_fold_unions_identifiers_keeps_newest_properties_and_sums_counts():
    a = apply_update(new_profile("shop", "pa"),
                     update(10, cookie="c1", properties={"x": 1, "y": 1}, actions=2))
    b = apply_update(new_profile("shop", "pb"),
                     update(5, cookie="c2", email="e", properties={"x": 0, "z": 3}, actions=1,
                            visits=1))
    b = apply_update(b, update(20, properties={"y": 2}))
    merged = fold(a, b)
    assert merged["cookies"] == ["c1", "c2"] and merged["emails"] == ["e"]
    assert shown(merged)["properties"] == {"x": 1, "y": 2, "z": 3}
    assert (merged["actions"], merged["visits"]) == (3, 1)
    assert (merged["first_seen_ms"], merged["last_seen_ms"]) == (5, 20)
    assert merged["merged_from"] == ["pb"] and merged["profile"] == "pa"


def test_fold_of_an_empty_profile_changes_only_the_history():
    a = apply_update(new_profile("shop", "pa"), update(10, cookie="c1"))
    merged = fold(a, new_profile("shop", "pb"))
    assert {k: v for k, v in merged.items() if k != "merged_from"} == {
        k: v for k, v in a.items() if k != "merged_from"}


def test_a_replayed_update_changes_nothing():
    p = apply_update(new_profile("shop", "p1"), update(100, actions=1, origin=[3, 10]))
    p = apply_update(p, update(110, actions=1, origin=[3, 11]))
    assert apply_update(p, update(100, actions=1, origin=[3, 10])) is None   # replays
    assert apply_update(p, update(110, actions=1, origin=[3, 11])) is None
    p = apply_update(p, update(120, actions=1, origin=[5, 2]))               # another partition
    assert p["actions"] == 3 and "applied" not in shown(p)


def test_updates_forwarded_by_a_merged_profile_are_a_path_of_their_own():
    p = apply_update(new_profile("shop", "p1"), update(100, actions=1, origin=[3, 50]))
    # an older update of the same partition that reached a merged profile first, forwarded
    forwarded = apply_update(p, update(90, actions=1, origin=[3, 40], via=">m1"))
    assert forwarded is not None and forwarded["actions"] == 2
    assert apply_update(forwarded, update(90, actions=1, origin=[3, 40], via=">m1")) is None
    longer = apply_update(forwarded, update(80, actions=1, origin=[3, 30], via=">m0>m1"))
    assert longer is not None and longer["actions"] == 3


def test_updates_without_an_origin_always_apply():
    p = apply_update(new_profile("shop", "p1"), update(100, actions=1))
    assert apply_update(p, update(100, actions=1))["actions"] == 2


def test_a_replayed_fold_changes_nothing():
    into = apply_update(new_profile("shop", "p1"), update(100, actions=2))
    source = apply_update(new_profile("shop", "p2"), update(50, actions=1))
    folded = fold(into, source)
    assert folded["actions"] == 3 and fold(folded, source) is None


def test_an_update_counted_by_a_fold_and_forwarded_again_is_a_replay():
    source = apply_update(new_profile("shop", "m1"), update(50, actions=1, origin=[2, 7]))
    into = fold(apply_update(new_profile("shop", "p1"), update(100, actions=1)), source)
    assert into["actions"] == 2
    # the source's worker crashed after the merge and forwards what it had applied again
    assert apply_update(into, update(50, actions=1, origin=[2, 7], via=">m1")) is None
    later = apply_update(into, update(60, actions=1, origin=[2, 8], via=">m1"))
    assert later["actions"] == 3


def test_a_stored_profile_costs_its_own_size():
    """A table of a million profiles keeps every encoded value: each must hold only its bytes
    (orjson's output alone keeps a 4 KiB buffer)."""
    import tracemalloc

    from schemas.profile import encode

    profile = apply_update(new_profile("shop", "p1"), update(1, cookie="c1",
                                                              properties={"name": "Rio"}))
    tracemalloc.start()
    try:
        kept = [encode(profile) for _ in range(1000)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1000 * (len(kept[0]) + 200)


def test_a_profile_is_bounded_and_what_goes_is_the_oldest_or_the_largest():
    from processors import profiles

    p = new_profile("shop", "p1")
    for n in range(profiles.MAX_IDENTIFIERS + 10):
        p = apply_update(p, update(n, cookie=f"c{n}", properties={f"k{n}": n}))
    small, trimmed = profiles.bounded(p)
    assert trimmed and len(small["cookies"]) == profiles.MAX_IDENTIFIERS
    assert small["cookies"][-1] == f"c{profiles.MAX_IDENTIFIERS + 9}" and "c0" not in small[
        "cookies"]
    huge = apply_update(small, update(10_000, properties={
        "blob": "x" * (profiles.MAX_PROFILE_BYTES + 10), "name": "Rio"}))
    fitted, trimmed = profiles.bounded(huge)
    from schemas.profile import encode
    assert trimmed and len(encode(fitted)) <= profiles.MAX_PROFILE_BYTES
    assert "blob" not in fitted["properties"] and shown(fitted)["properties"]["name"] == "Rio"
    assert profiles.bounded(fitted) == (fitted, False)


def test_a_fold_through_a_profile_merged_since_is_a_replay_when_that_one_folded_it():
    a = apply_update(new_profile("shop", "pa"), update(10, actions=1, origin=[1, 5]))
    b = fold(apply_update(new_profile("shop", "pb"), update(20, actions=1)), a)
    c = fold(new_profile("shop", "pc"), b)  # b (with a in it) merged into c
    assert c["actions"] == 2 and sorted(c["merged_from"]) == ["pa", "pb"]
    assert fold(c, a, via=">pb") is None  # a's fold forwarded by b again: c has it
    # an update a applied, replayed after both merges, forwarded a → b → c
    assert apply_update(c, update(10, actions=1, origin=[1, 5], via=">pa>pb")) is None


def test_a_fold_forwarded_before_its_source_was_counted_applies_on_its_path():
    a = apply_update(new_profile("shop", "pa"), update(10, actions=1, origin=[1, 5]))
    c = fold(new_profile("shop", "pc"), apply_update(new_profile("shop", "pb"),
                                                     update(20, actions=1)))
    folded = fold(c, a, via=">pb")  # b was merged into c before a's fold reached b
    assert folded["actions"] == 2 and "pa" in folded["merged_from"]
    assert apply_update(folded, update(10, actions=1, origin=[1, 5], via=">pa>pb")) is None
    assert apply_update(folded, update(11, actions=1, origin=[1, 6], via=">pa>pb")) is not None


def test_a_fold_written_before_forwarding_existed_reads_as_direct():
    from schemas.profile import Fold, change_from_obj

    old = ["fold", "shop", "pb", new_profile("shop", "pa")]
    assert change_from_obj(old) == Fold("shop", "pb", new_profile("shop", "pa"))
    assert Fold("shop", "pb", new_profile("shop", "pa")).to_obj() == old  # written the same
    forwarded = Fold("shop", "pc", new_profile("shop", "pa"), ">pb")
    assert change_from_obj(forwarded.to_obj()) == forwarded
