"""The stages on envelopes of many records, with no broker: what one envelope makes, how a
crash at any point between its journal entry and its last line is completed, and how a
record's own fault stays its own (``processors.pipeline.Stages``, a transport that records)."""

from collections import Counter

import msgpack
import msgspec
import pytest

from logstore.reading import read_lines
from processors.pipeline import Stages
from processors.stages.visitor import decode_visitor
from runtime.settings import Settings
from schemas import envelope
from schemas.deadletter import DeadLetter
from schemas.identity import Link, Rebind
from schemas.raw import RawRecord

DAY = "2027-01-15"
RECEIVED_MS = 1_800_000_000_000  # 2027-01-15


class Recorder:
    """A transport that keeps what it was given: (topic, partition, key, value)."""

    def __init__(self):
        self.sent = []

    async def send(self, topic, partition, messages):
        self.sent += [(topic, partition, key, value) for key, value in messages]

    def topic(self, name):
        return [m for m in self.sent if m[0] == f"trackpipe.{name}"]

    def items(self, name):
        """The items of the envelopes sent to an internal topic."""
        return [item for *_, value in self.topic(name) for item in envelope.unpack(value)]


@pytest.fixture
def settings(tmp_path):
    return Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path, raw_partitions=4)


@pytest.fixture
def make_stages(settings):
    """Stages over the same data folder, as a restarted worker would be: tables recovered
    from what was flushed (the stores passed in), journal and day logs from the disk."""
    made = []

    def make(stores=None):
        recorder = Recorder()
        stages = Stages(settings, recorder, stores)
        stages.recorder = recorder
        made.append(stages)
        return stages

    yield make
    for stages in made:
        stages.close()


def raw(n, cookie="ck1", project="shop.example", **params):
    query = "&".join(f"{k}={v}" for k, v in {"event": "pv", "cookie": cookie, **params}.items())
    return RawRecord(id=f"00000000-0000-7000-8000-{n:012d}", received_ms=RECEIVED_MS + n,
                     endpoint="ce", project=project, ip="192.0.2.1", query=query.encode(),
                     visitor_key=f"cookie:{cookie}")


def pack(*records):
    return envelope.pack([r.to_bytes() for r in records])


def logged(settings, project="shop.example"):
    return list(read_lines(settings.data_dir / "logs", project, [DAY]))


async def test_an_envelope_is_one_write_per_file_and_its_outputs_are_batched(make_stages,
                                                                           settings):
    stages = make_stages()
    records = [raw(n, cookie=f"ck{n % 3}", cv_name=f"n{n}") for n in range(9)]
    stages.visitors.handle_raw(2, 40, pack(*records))
    await stages.commit()
    lines = logged(settings)
    assert [line["id"] for line in lines] == [r.id for r in records]
    assert [line["_source"] for line in lines] == [
        {"partition": 2, "offset": 40, "index": i} for i in range(9)]
    rec = stages.recorder
    assert len(rec.topic("actions")) == 9  # public: one message an action
    assert len(rec.topic("visits")) == 3   # a visit started per visitor
    updates = rec.items("profile-updates")
    assert len(updates) == 3 and len(rec.topic("profile-updates")) <= 3  # one per profile
    assert sorted(u[11] for u in updates) == [3, 3, 3]  # actions folded per profile
    changelog = rec.topic("processors-visitors-changelog")
    assert len(changelog) == 3 and {m[1] for m in changelog} == {2}  # once a key, own partition


async def test_each_changed_key_is_written_once_a_flush_whatever_the_envelopes(make_stages):
    stages = make_stages()
    for offset in range(5):
        stages.visitors.handle_raw(0, offset, pack(raw(offset, cookie="same")))
    await stages.commit()
    assert len(stages.recorder.topic("processors-visitors-changelog")) == 1
    assert len(stages.recorder.topic("actions")) == 5


async def test_a_crash_after_the_journal_entry_completes_the_lines_and_resends(make_stages,
                                                                             settings,
                                                                             monkeypatch):
    first = make_stages()
    records = [raw(0, project="a.example"), raw(1, project="b.example"),
               raw(2, project="a.example")]
    real_write = first.visitors.daylog.write

    def crash_after_the_first_file(partition, offset, lines):
        real_write(partition, offset, [line for line in lines if line[0] == "a.example"])
        raise SystemExit("killed")  # a.example's file is written, then: kill -9

    monkeypatch.setattr(first.visitors.daylog, "write", crash_after_the_first_file)
    with pytest.raises(SystemExit):
        first.visitors.handle_raw(1, 7, pack(*records))
    assert len(logged(settings, "a.example")) == 2 and logged(settings, "b.example") == []

    again = make_stages()  # its tables recovered without anything of offset 7
    assert again.visitors.position(1) == 7  # and b.example's line is written by now
    assert [r["id"] for r in logged(settings, "b.example")] == [records[1].id]
    again.visitors.handle_raw(1, 7, pack(*records))  # faust hands the envelope over again
    await again.commit()
    assert len(logged(settings, "a.example")) == 2 and len(logged(settings, "b.example")) == 1
    assert len(again.recorder.topic("actions")) == 3  # its messages, sent again
    assert len(again.recorder.topic("processors-visitors-changelog")) == 2  # writes applied
    assert again.visitors.deadlines.has(1) is False  # indexed from the table on the next tick


async def test_a_day_log_write_that_fails_is_retried_without_a_duplicate(make_stages, settings,
                                                                       monkeypatch):
    stages = make_stages()
    real_write, failures = stages.visitors.daylog.write, []

    def full_disk_once(partition, offset, lines):
        if not failures:
            failures.append(1)
            raise OSError(28, "No space left on device")
        real_write(partition, offset, lines)

    monkeypatch.setattr(stages.visitors.daylog, "write", full_disk_once)
    records = [raw(0), raw(1)]
    with pytest.raises(OSError):
        stages.visitors.handle_raw(0, 3, pack(*records))
    stages.visitors.handle_raw(0, 3, pack(*records))  # the worker retries the same envelope
    await stages.commit()
    assert [r["id"] for r in logged(settings)] == [r.id for r in records]
    assert len(stages.recorder.topic("actions")) == 2


async def test_a_replayed_envelope_does_not_undo_a_later_write_of_its_visitor(make_stages):
    """A rebind (or a tick) wrote the visitor after the envelope; the next owner's recovered
    table holds that write, and the envelope, read again, must not put the older entry back."""
    first = make_stages()
    first.visitors.handle_raw(0, 0, pack(raw(0)))
    first.visitors.sync()  # as the worker does before it flushes and commits
    await first.commit()
    [(_, _, key, value)] = first.recorder.topic("processors-visitors-changelog")
    link = Link("email:a@x", decode_visitor(value).state.profile, "cookie:ck1", False,
                "shop.example")
    first.visitors.handle_rebind(0, Rebind(link, "p-survivor").to_obj())
    await first.commit()
    rebound = first.visitors.visitors.get(key)
    assert rebound.state.profile == "p-survivor"

    again = make_stages({"visitors": {key: first.visitors.visitors.store.get(key)},
                         "quota_counts": {}, "identities": {}, "profiles": {},
                         "quota_totals": {}})
    again.visitors.handle_raw(0, 0, pack(raw(0)))
    await again.commit()
    assert again.visitors.visitors.get(key) == rebound
    assert again.recorder.topic("processors-visitors-changelog") == []
    assert len(again.recorder.topic("actions")) == 1


async def test_a_bad_record_is_a_dead_letter_of_its_own_and_the_envelope_goes_on(make_stages,
                                                                               settings):
    stages = make_stages()
    good = [raw(0), raw(2)]
    items = [good[0].to_bytes(), msgpack.packb({"v": 99}), raw(1, project="../etc").to_bytes(),
             good[1].to_bytes()]
    stages.visitors.handle_raw(0, 5, envelope.pack(items))
    await stages.outbound.flush()
    assert [r["id"] for r in logged(settings)] == [r.id for r in good]
    letters = [DeadLetter.from_json(v) for *_, v in stages.recorder.topic("deadletter")]
    assert [(d.kind, d.offset, d.index) for d in letters] == [("record", 5, 1), ("record", 5, 2)]
    assert "version" in letters[0].error and "project name" in letters[1].error
    assert not (settings.data_dir / "etc").exists()


async def test_a_message_that_is_no_envelope_is_a_dead_letter(make_stages):
    stages = make_stages()
    stages.visitors.handle_raw(0, 0, b"\xc1 not msgpack")
    await stages.outbound.flush()
    [letter] = [DeadLetter.from_json(v) for *_, v in stages.recorder.topic("deadletter")]
    assert letter.value == b"\xc1 not msgpack" and letter.index is None
    assert stages.visitors.position(0) == 0  # handled: never fetched again


async def test_an_event_id_is_logged_once_within_and_across_envelopes(make_stages, settings):
    stages = make_stages()
    twice = raw(0)
    stages.visitors.handle_raw(0, 0, pack(twice, twice, raw(1)))
    stages.visitors.handle_raw(0, 1, pack(twice))
    await stages.outbound.flush()
    assert Counter(r["id"] for r in logged(settings)) == {twice.id: 1, raw(1).id: 1}
    assert stages.metrics.duplicates == 2


async def test_a_timestamp_beyond_the_year_9999_is_logged_at_its_receipt_time(make_stages,
                                                                             settings):
    stages = make_stages()
    stages.visitors.handle_raw(0, 0, pack(raw(0, timestamp="253402300800000")))
    await stages.outbound.flush()
    [line] = logged(settings)
    assert (line["event_ms"], line["clock"]) == (RECEIVED_MS, "receipt")
    assert stages.recorder.topic("deadletter") == []


async def test_a_client_retry_of_an_action_is_logged_once(make_stages, settings):
    """The same action (project, visitor, idptnc) sent again by a client that lost its
    connection: a new event id, the same action. An update naming it is no retry."""
    stages = make_stages()
    stages.visitors.handle_raw(0, 0, pack(raw(0, idptnc="a1"), raw(1, idptnc="a1")))
    stages.visitors.handle_raw(0, 1, pack(raw(2, idptnc="a1"), raw(3, idptnc="a2")))
    update = msgspec.structs.replace(raw(4), endpoint="update", query=b"cookie=ck1&idptnc=a1")
    stages.visitors.handle_raw(0, 2, pack(update))
    await stages.outbound.flush()
    lines = logged(settings)
    assert [r["id"] for r in lines] == [raw(0).id, raw(3).id, update.id]
    assert lines[2]["updates"] == raw(0).id and stages.metrics.duplicates == 2


async def test_a_huge_bad_record_makes_a_dead_letter_that_fits_a_message(make_stages):
    """A 900 KB record that cannot be read: its dead letter carries a cut copy (base64 would
    make it 1.2 MB, over what a message may be) and says how big it was."""
    from processors.outbound import MAX_MESSAGE_BYTES
    from schemas.deadletter import MAX_VALUE_BYTES

    stages = make_stages()
    poison = msgpack.packb({"v": 99, "blob": "x" * 900_000})
    stages.visitors.handle_raw(0, 0, envelope.pack([poison]))
    await stages.outbound.flush()
    [(_, _, _, value)] = stages.recorder.topic("deadletter")
    letter = DeadLetter.from_json(value)
    assert len(value) < MAX_MESSAGE_BYTES and len(letter.value) == MAX_VALUE_BYTES
    assert letter.value == poison[:MAX_VALUE_BYTES]
    assert orjson_loads(value)["value_bytes"] == len(poison)


def orjson_loads(data):
    import orjson

    return orjson.loads(data)


async def test_retention_removes_this_partitions_old_days_of_that_project_only(make_stages,
                                                                             settings):
    stages = make_stages()
    logs = settings.data_dir / "logs"
    old = RECEIVED_MS - 10 * 86_400_000
    for offset, (project, received, partition) in enumerate([
            ("shop.example", old, 0), ("shop.example", RECEIVED_MS, 0),
            ("shop.example", old, 1), ("other.example", old, 0)]):
        record = raw(offset, project=project)
        record = msgspec.structs.replace(record, received_ms=received)
        stages.visitors.handle_raw(partition, offset, pack(record))
    old_day = "2027-01-05"
    assert (logs / "shop.example" / old_day / "part-000.jsonl").exists()
    stages.visitors.retention_changed("shop.example", 7)  # other.example: not in the registry
    stages.visitors.handle_tick(0, RECEIVED_MS, catching_up=False)
    assert not (logs / "shop.example" / old_day / "part-000.jsonl").exists()
    assert (logs / "shop.example" / old_day / "part-001.jsonl").exists()  # not ours
    assert (logs / "shop.example" / DAY / "part-000.jsonl").exists()      # within retention
    assert (logs / "other.example" / old_day / "part-000.jsonl").exists()  # another project
    assert stages.metrics.retention_removed == 1


async def profile_changes(stages):
    """What the profiles stage sent to profile-updates, decoded."""
    from schemas.profile import change_from_obj

    await stages.outbound.flush()
    return [change_from_obj(item) for item in stages.recorder.items("profile-updates")]


async def test_a_fold_that_reaches_a_merged_profile_goes_on_to_its_survivor(make_stages):
    from processors.profiles import new_profile
    from schemas.profile import Fold, MergeInto

    stages = make_stages()
    stages.profiles.apply(0, MergeInto("shop.example", "pb", "pc"))  # b merged into c first
    source = {**new_profile("shop.example", "pa"), "actions": 4}
    stages.profiles.apply(0, Fold("shop.example", "pb", source))     # then a's fold reaches b
    fold_of_b, fold_of_a = await profile_changes(stages)
    assert fold_of_b.profile == "pc" and fold_of_b.source["profile"] == "pb"
    assert fold_of_a == Fold("shop.example", "pc", source, ">pb")


async def test_a_merge_read_again_sends_its_fold_again(make_stages):
    from schemas.profile import Fold, MergeInto

    stages = make_stages()
    merge = MergeInto("shop.example", "pa", "pb")
    stages.profiles.apply(0, merge)
    stages.profiles.apply(0, merge)  # a replay after a crash: the first fold may be lost
    folds = await profile_changes(stages)
    assert len(folds) == 2 and all(isinstance(f, Fold) and f.profile == "pb" for f in folds)
    assert folds[0] == folds[1]


async def test_changes_caught_in_a_cycle_of_merges_are_dropped_and_counted(make_stages):
    from schemas.profile import Fold, MergeInto, ProfileUpdate

    stages = make_stages()
    stages.profiles.apply(0, MergeInto("shop.example", "pa", "pb"))
    stages.profiles.apply(0, MergeInto("shop.example", "pb", "pa"))
    stages.profiles.apply(0, ProfileUpdate("shop.example", "pa", [0, 1], ">pb", actions=1))
    stages.profiles.apply(0, Fold("shop.example", "pa", {"profile": "pb"}))
    sent = await profile_changes(stages)
    assert [type(c) for c in sent] == [Fold, Fold]  # only the two merges' own folds
    assert stages.metrics.profiles_cycles == 2

