"""How the processors treat a failing record: a record's fault is a dead letter, transient
I/O is retried (the agent wiring is built, no broker is needed: handlers are called direct)."""

import pytest
from aiokafka.errors import KafkaConnectionError

import processors.app as app_module
from processors.app import Processors
from schemas.raw import RawRecord
from trackpipe.settings import Settings


class Message:
    topic, partition, offset, key, value = "t.raw", 0, 7, b"k", b"v"


@pytest.fixture
def processors(monkeypatch, tmp_path):
    made = Processors(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path),
                      "127.0.0.1:1", 6066)
    made.dead = []

    async def dead(message, exc):
        made.dead.append(exc)

    monkeypatch.setattr(made, "_dead", dead)
    monkeypatch.setattr(app_module, "RETRY_FIRST_S", 0.001)
    return made


@pytest.mark.parametrize("transient", [OSError("disk full"), KafkaConnectionError("down")],
                         ids=["disk", "kafka"])
async def test_transient_io_is_retried_until_it_succeeds(processors, transient):
    calls = []

    async def handle(message):
        calls.append(message)
        if len(calls) < 3:
            raise transient

    await processors._guarded(handle, Message())
    assert len(calls) == 3 and processors.dead == []


async def test_a_records_own_fault_is_a_dead_letter_at_once(processors):
    calls = []

    async def handle(message):
        calls.append(message)
        raise ValueError("not a record we can read")

    await processors._guarded(handle, Message())
    assert len(calls) == 1 and [str(e) for e in processors.dead] == ["not a record we can read"]


class Sent:
    def __init__(self):
        self.messages = []

    async def __call__(self, outputs, message):
        self.messages += [(topic, key, value, message.partition) for topic, key, value in outputs]


def raw_message(processors, offset, visitor="ck1"):
    record = RawRecord(id=f"00000000-0000-7000-8000-{offset:012d}",
                       received_ms=1_800_000_000_000, endpoint="ce", project="shop.example",
                       ip="192.0.2.1", query=b"event=pv&cookie=" + visitor.encode(),
                       visitor_key=f"cookie:{visitor}")
    message = Message()
    message.topic, message.partition, message.offset = processors.raw_topic, 2, offset
    message.key, message.value = record.kafka_key(), record.to_bytes()
    return message


async def test_a_record_is_sent_once_with_its_table_writes_on_its_own_partition(processors):
    processors._send = sent = Sent()
    await processors._guarded(processors._raw, raw_message(processors, 0))
    topics = [topic for topic, *_ in sent.messages]
    assert "trackpipe.actions" in topics and "trackpipe.profile-updates" in topics
    changelogs = [m for m in sent.messages if m[0].endswith("-changelog")]
    assert {m[0] for m in changelogs} >= {"trackpipe.processors-visitors-changelog",
                                          "trackpipe.processors-seen-changelog"}
    assert all(partition == 2 for *_, partition in sent.messages)


async def test_a_record_handled_before_a_crash_resends_and_reapplies_what_it_wrote(processors,
                                                                                  tmp_path):
    processors._send = first = Sent()
    await processors._guarded(processors._raw, raw_message(processors, 0))
    visitors = processors.visitors_table
    entry = visitors.data[next(iter(visitors.data))]

    # A new process: tables recovered without the last writes, the same day log and outbox.
    again = Processors(processors.settings, "127.0.0.1:1", 6066)
    again._send = second = Sent()
    assert dict(again.visitors_table.data) == {}
    again._deadlines.rebuild(2, [])  # a tick came first and indexed the (empty) table
    await again._guarded(again._raw, raw_message(again, 0))
    assert second.messages == first.messages  # its messages again, byte for byte
    assert list(again.visitors_table.data.values()) == [entry]  # and its writes applied
    assert list(again._deadlines.due(2, entry["visit"]["deadline_ms"])) == [
        next(iter(again.visitors_table.data))]  # its open visit will close on time
    assert sum(1 for _ in (tmp_path / "logs").rglob("part-*.jsonl")) == 1
    lines = next((tmp_path / "logs").rglob("part-*.jsonl")).read_text().splitlines()
    assert len(lines) == 1  # and still one line in the day log


async def test_a_day_log_write_that_fails_is_retried_as_if_the_record_were_new(processors,
                                                                              monkeypatch,
                                                                              tmp_path):
    processors._send = sent = Sent()
    write, failures = processors.daylog.write, []

    def flaky(*args):
        if not failures:
            failures.append(1)
            raise OSError("disk full")
        return write(*args)

    monkeypatch.setattr(processors.daylog, "write", flaky)
    await processors._guarded(processors._raw, raw_message(processors, 0))
    lines = next((tmp_path / "logs").rglob("part-*.jsonl")).read_text().splitlines()
    assert failures and len(lines) == 1  # not taken for a duplicate of itself
    assert [m[0] for m in sent.messages].count("trackpipe.actions") == 1


class FlakySink:
    """Refuses the first send with a transient error, and any value over 100 bytes for good."""

    def __init__(self):
        self.sent, self.failed = [], False

    async def send(self, topic, key, value, partition=None):
        from aiokafka.errors import MessageSizeTooLargeError

        if value is not None and len(value) > 100:
            raise MessageSizeTooLargeError("too large")
        if not self.failed:
            self.failed = True
            raise KafkaConnectionError("down")
        self.sent.append(value)


async def test_a_failed_send_resumes_where_it_stopped_and_an_oversized_one_is_a_dead_letter(
        processors):
    processors.sink = sink = FlakySink()
    handled = []

    async def handle(message):
        handled.append(message)
        processors._pending += [("t.a", b"k", b"1"), ("t.a", b"k", b"x" * 101),
                                ("t.a", b"k", b"2")]

    await processors._guarded(handle, Message())
    assert len(handled) == 1  # handled once: the tables must not change twice
    assert sink.sent == [b"1", b"2"]
    assert [type(e).__name__ for e in processors.dead] == ["MessageSizeTooLargeError"]


async def test_a_replayed_record_does_not_undo_a_later_write_of_its_visitor(processors):
    """A rebind (or a tick) wrote the visitor after the record; the new owner's recovered table
    holds that write, and the record, read again, must not put the older entry back."""
    processors._send = first = Sent()
    await processors._guarded(processors._raw, raw_message(processors, 0))
    key, entry = next(iter(processors.visitors_table.data.items()))

    again = Processors(processors.settings, "127.0.0.1:1", 6066)
    rebound = {**entry, "state": {**entry["state"], "profile": "p-survivor"},
               "v": entry["v"] + 1}
    again.visitors_table.data[key] = rebound  # recovered from the changelog
    again._send = second = Sent()
    await again._guarded(again._raw, raw_message(again, 0))
    assert again.visitors_table.data[key] == rebound
    resent = {topic for topic, *_ in second.messages}
    assert "trackpipe.processors-visitors-changelog" not in resent
    assert "trackpipe.actions" in resent and "trackpipe.profile-updates" in resent
    assert len(second.messages) < len(first.messages)
