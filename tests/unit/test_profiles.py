from processors.profiles import apply_update, fold, new_profile, shown


def update(at, **kw):
    return {"event_ms": at, **kw}


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
