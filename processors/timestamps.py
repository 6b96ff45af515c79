"""Which time an action happened at (SPEC §4). Pure: the receipt time comes in as an argument.

``timestamp`` is unix ms. Without it (or with a value that is not a number, or not a time a
calendar can write: beyond the year 9999) the receipt time is the event time, and the time
records which clock it came from. Past timestamps are kept
as sent. A timestamp later than the receipt time by more than ``FUTURE_TOLERANCE_MS`` (clock
skew of senders) is kept but flagged ``future``: reads leave it out until it has happened.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

FUTURE_TOLERANCE_MS = 60_000
MAX_EVENT_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: day logs name days by date


class Clock(StrEnum):
    SENDER = "sender"      # the request's timestamp
    RECEIPT = "receipt"    # the gateway's receipt time (no usable timestamp)


class EventTime(msgspec.Struct, frozen=True, gc=False):
    ms: int
    clock: Clock
    future: bool = False


def event_time(timestamp: object, received_ms: int) -> EventTime:
    if timestamp is None or isinstance(timestamp, bool) or timestamp == "":
        return EventTime(received_ms, Clock.RECEIPT)
    try:
        ms = int(float(str(timestamp).strip()))
    except (ValueError, OverflowError):  # not a number, or infinite
        return EventTime(received_ms, Clock.RECEIPT)
    if not 0 < ms <= MAX_EVENT_MS:
        return EventTime(received_ms, Clock.RECEIPT)
    return EventTime(ms, Clock.SENDER, future=ms > received_ms + FUTURE_TOLERANCE_MS)


def adjustment(timestamp: object, time: EventTime, received_ms: int) -> str | None:
    """Why ``time`` (``event_time``'s answer) is not simply the ``timestamp`` sent, or is
    flagged (None: it is, or none was sent): what an ingestion warning says."""
    if time.future:
        return (f"the timestamp is {(time.ms - received_ms) // 1000} s ahead of its receipt: "
                "kept, flagged future, hidden from reads until then")
    if time.clock is Clock.SENDER or timestamp is None or timestamp == "":
        return None
    if isinstance(timestamp, bool):
        return "the timestamp is not a number: the receipt time is the event time"
    try:
        ms = int(float(str(timestamp).strip()))
    except (ValueError, OverflowError):
        return "the timestamp is not a number: the receipt time is the event time"
    return (f"the timestamp {ms} is not a time after 1970 and before the year 10000 (unix "
            "ms): the receipt time is the event time")
