from processors.deadlines import DeadlineIndex


def test_due_keys_come_out_in_deadline_order_once():
    index = DeadlineIndex()
    index.rebuild(0, [(300, b"c"), (100, b"a")])
    index.push(0, 200, b"b")
    index.push(0, 900, b"z")
    assert list(index.due(0, 250)) == [b"a", b"b"]
    assert list(index.due(0, 250)) == []
    assert list(index.due(0, 1000)) == [b"c", b"z"]


def test_partitions_are_separate_and_pushes_wait_for_a_rebuild():
    index = DeadlineIndex()
    index.push(1, 10, b"lost-until-rebuild")  # the table still has it: the rebuild finds it
    assert not index.has(1) and list(index.due(1, 100)) == []
    index.rebuild(1, [(10, b"from-table")])
    index.rebuild(2, [(10, b"other")])
    assert list(index.due(1, 100)) == [b"from-table"]
    index.forget()
    assert not index.has(2)
