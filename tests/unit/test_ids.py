import uuid

from gateway.ids import EventIds


def test_ids_are_uuid7_time_ordered_and_unique_within_one_millisecond():
    ids = EventIds(clock_ns=lambda: 1_700_000_000_123_456_789)
    made = [ids.next() for _ in range(5000)]  # > 4096: the counter overflows into the next ms
    values = [uuid.UUID(i) for i, _ in made]
    assert all(v.version == 7 and v.variant == uuid.RFC_4122 for v in values)
    assert [str(v) for v in values] == [i for i, _ in made]
    assert sorted(i for i, _ in made) == [i for i, _ in made]
    assert len(set(values)) == len(values)
    assert values[0].int >> 80 == 1_700_000_000_123
    assert {ms for _, ms in made} == {1_700_000_000_123}


def test_ids_stay_ordered_when_the_clock_steps_back():
    now = [2_000_000_000_000_000_000]
    ids = EventIds(clock_ns=lambda: now[0])
    first, _ = ids.next()
    now[0] -= 5_000_000_000
    second, _ = ids.next()
    assert second > first


def test_two_generators_do_not_collide():
    a, b = EventIds(clock_ns=lambda: 10**18), EventIds(clock_ns=lambda: 10**18)
    assert {a.next()[0] for _ in range(100)}.isdisjoint({b.next()[0] for _ in range(100)})
