"""``trackpipe warnings`` and ``trackpipe deadletters``: what the pipeline changed or refused of
what senders sent, and what it could not handle, read from their topics (never from logs).

``warnings [PROJECT]`` reads the ``warnings`` topic (``schemas.warning``: one project's
partition when a project is named) from ``--since`` on and prints the newest first with the
count of each kind over everything read. ``deadletters`` reads the ``deadletter`` topic
(``schemas.deadletter``) the same way, one row per letter with its id (``partition:offset``),
its reason and whether it can be re-sent; ``--resend ID`` re-sends it (``cli.resend``). What
senders wrote is escaped before it reaches the terminal (``output``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from runtime.recent import read_recent
from runtime.settings import Settings
from schemas import envelope, topics
from schemas.deadletter import DeadLetter
from schemas.raw import RawRecord, SchemaError
from schemas.warning import IngestionWarning, Kind
from trackpipe.cli import output
from trackpipe.cli.common import CliError, command, count

UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+)([smhd])")
LETTER_KINDS = ("record", "output", "spool", "action", "trigger")


def register(roles: Any) -> None:
    warnings = command(roles, "warnings", print_warnings, "what the pipeline changed or refused "
                       "of what a project's senders sent, newest first, with counts per kind",
                       "trackpipe warnings shop.example --since 1h\n"
                       "trackpipe warnings shop.example --kind merge_refused --json")
    warnings.add_argument("project", nargs="?", help="the project (as sent, for an unknown "
                          "one; default: every project)")
    when(warnings)
    warnings.add_argument("--kind", action="append", choices=[k.value for k in Kind],
                          metavar="KIND", help="only this kind (repeat for more): "
                          + ", ".join(k.value for k in Kind))
    shown(warnings)

    letters = command(roles, "deadletters", print_deadletters, "what the dead-letter topic "
                      "holds, newest first, with its reason; --resend ID sends one again once "
                      "its cause is fixed",
                      "trackpipe deadletters --since 1d --kind trigger\n"
                      "trackpipe deadletters --resend 3:1042")
    letters.add_argument("--project", help="only letters of this project")
    when(letters)
    letters.add_argument("--kind", action="append", choices=LETTER_KINDS, metavar="KIND",
                         help="only this kind (repeat for more): " + ", ".join(LETTER_KINDS))
    letters.add_argument("--resend", action="append", metavar="ID", type=letter_id,
                         help="send the letter PARTITION:OFFSET again (a raw record to the "
                         "processors, a firing to its trigger's webhook; repeat for more)")
    shown(letters)


def when(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="WHEN", default=None,
                        help="from this time on: 30m, 2h, 7d, a date (UTC) or a date and time "
                        "(default: all the topic keeps)")


def shown(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=count, default=50, metavar="N",
                        help="print the N newest (default: 50; the counts cover all)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON document: counts and rows (times in epoch ms)")


def letter_id(text: str) -> tuple[int, int]:
    """An argparse type: a letter's ``PARTITION:OFFSET``."""
    partition, _, offset = text.partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not PARTITION:OFFSET, like 3:1042")
    return int(partition), int(offset)


def since_ms(text: str | None, now_ms: int) -> int | None:
    """``--since``: a duration back from ``now_ms`` (30m, 2h, 1d12h), a date (midnight UTC)
    or an ISO date and time (UTC unless it says otherwise); None: from the start."""
    if text is None:
        return None
    spoken = text.strip().lower()
    parts = _DURATION.findall(spoken)
    if parts and "".join(n + u for n, u in parts) == spoken:
        return now_ms - sum(int(n) * UNITS_MS[u] for n, u in parts)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"--since {text[:40]!r}: give a duration like 30m, 2h or 7d, or a date "
                       "like 2026-12-01 or 2026-12-01T09:30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# -- warnings -------------------------------------------------------------------------------------

def print_warnings(settings: Settings, args: argparse.Namespace) -> int:
    start = since_ms(args.since, int(time.time() * 1000))
    records = asyncio.run(_read(settings, topics.WARNINGS, start, args.project))
    found = []
    for record in records:
        try:
            warning = IngestionWarning.from_json(record.value)
        except Exception:  # a record of a newer version: not ours to read
            continue
        if (args.project is None or warning.project == args.project) and (
                not args.kind or warning.kind in args.kind):
            found.append((warning.at_ms or record.timestamp, warning))
    found.sort(key=lambda item: item[0], reverse=True)
    counts = Counter(warning.kind for _, warning in found)
    if args.json:
        print(output.json_text({
            "project": args.project, "since_ms": start, "counts": dict(counts.most_common()),
            "warnings": [warning.shown() for _, warning in found[:args.limit]]}))
        return 0
    print(headline("warnings", args.project, start, len(found), counts))
    output.write(["time", "kind", "event id", "reason", "sample"],
                 [[[output.when(at), w.kind, w.event_id, _reason(w), w.sample]
                   for at, w in found[:args.limit]]], "table", noun="warning")
    return 0


def _reason(warning: IngestionWarning) -> str:
    if warning.unrecorded:
        return f"{warning.reason} (+{warning.unrecorded} like it not recorded)"
    return warning.reason


def headline(what: str, project: str | None, start: int | None, total: int,
             counts: Counter[str]) -> str:
    """One line above the rows: how many, of what, since when, by kind."""
    whose = f" of {output.visible(project)}" if project else ""
    since = f" since {output.when(start)}" if start is not None else ""
    kinds = ", ".join(f"{kind} {n}" for kind, n in counts.most_common())
    return f"{total} {what}{whose}{since}" + (f": {kinds}" if kinds else "")


# -- dead letters ---------------------------------------------------------------------------------

def print_deadletters(settings: Settings, args: argparse.Namespace) -> int:
    if args.resend:
        from trackpipe.cli.resend import resend  # the triggers' delivery, only when asked

        return resend(settings, args.resend)
    start = since_ms(args.since, int(time.time() * 1000))
    records = asyncio.run(_read(settings, topics.DEADLETTER, start, None))
    rows = []
    for record in records:
        row = letter_row(record, settings.topic(topics.RAW))
        if row is None:
            continue
        if (args.project is None or row["project"] == args.project) and (
                not args.kind or row["kind"] in args.kind):
            rows.append(row)
    rows.sort(key=lambda row: row["time_ms"], reverse=True)
    counts = Counter(row["kind"] for row in rows)
    if args.json:
        print(output.json_text({"project": args.project, "since_ms": start,
                                "counts": dict(counts.most_common()),
                                "letters": rows[:args.limit]}))
        return 0
    print(headline("dead letters", args.project, start, len(rows), counts))
    output.write(["id", "time", "kind", "project", "reason", "what", "resend"],
                 [[[row["id"], output.when(row["time_ms"]), row["kind"], row["project"],
                    row["reason"], row["what"], "yes" if row["resendable"] else "no"]
                   for row in rows[:args.limit]]], "table", noun="dead letter")
    return 0


def letter_row(record: Any, raw_topic: str) -> dict[str, Any] | None:
    """What a listing shows of one record of the dead-letter topic (None: not a letter)."""
    try:
        letter = DeadLetter.from_json(record.value)
    except Exception:
        return None
    plan = resend_plan(letter, raw_topic, was_cut(record.value))
    return {"id": f"{record.partition}:{record.offset}", "time_ms": record.timestamp,
            "kind": letter.kind, "project": letter_project(letter, raw_topic),
            "reason": letter.error, "what": letter_what(letter),
            "resendable": plan.refusal is None, "why_not": plan.refusal}


def was_cut(value: bytes) -> bool:
    """Whether a letter's copy of its input was cut (``value_bytes``: the size it had)."""
    return b'"value_bytes"' in value and "value_bytes" in json.loads(value)


def letter_project(letter: DeadLetter, raw_topic: str) -> str:
    """The project a letter is about, where it can be told: a firing's, a raw record's, an
    action's (its key names it); else ''."""
    if letter.kind == "trigger":
        return str(letter.detail.get("project") or "")
    if letter.kind == "action" and letter.key:
        return letter.key.split(b"\n", 1)[0].decode("utf-8", "replace")
    if letter.value is not None and (letter.topic == raw_topic or letter.kind == "spool"):
        try:
            return RawRecord.from_bytes(letter.value).project
        except SchemaError:
            return ""
    return ""


def letter_what(letter: DeadLetter) -> str:
    """Which input a letter holds, in words."""
    if letter.kind == "trigger":
        return f"firing {letter.detail.get('delivery')} to {letter.detail.get('webhook')}"
    where = f"{letter.topic}[{letter.partition}]@{letter.offset}" if letter.topic else ""
    if letter.index is not None:
        where += f"#{letter.index}"
    if letter.value is not None:
        try:
            record = RawRecord.from_bytes(letter.value)
            return f"{where} record {record.id}".strip()
        except SchemaError:
            pass
    return where


class Plan:
    """What re-sending a letter does: ``what`` (a raw ``record``, a raw ``envelope`` or a
    ``firing``), where, and the bytes; or the ``refusal`` that says why it cannot."""

    def __init__(self, what: str = "", partition: int | None = None, value: bytes = b"",
                 record: RawRecord | None = None, refusal: str | None = None) -> None:
        self.what, self.partition, self.value = what, partition, value
        self.record, self.refusal = record, refusal


def resend_plan(letter: DeadLetter, raw_topic: str, cut: bool = False) -> Plan:
    """A raw record (one of an envelope, or a spooled one) goes back to the raw topic alone,
    in an envelope, to the partition its key hashes to (``partition`` is left to the sender,
    who knows the count); a raw envelope dead-lettered whole goes back as it was to its own
    partition; a firing to its trigger's webhook. Nothing else is: an internal message
    (links, rebinds, profile updates, quota counts) was made from raw records already logged,
    and a copy out of its order could put an older state over a newer one, so what it carried
    is lost and its warning says so; an oversized output or an unreadable action would fail
    the same way."""
    if letter.kind == "trigger":
        if not letter.detail.get("webhook"):
            return Plan(refusal="a JS action whose visitor cannot come back: nothing to send")
        return Plan("firing", letter.partition)
    if letter.kind not in ("record", "spool") or (letter.kind == "record"
                                                   and letter.topic != raw_topic):
        return Plan(refusal=f"a letter of kind {letter.kind} from {letter.topic or '-'}: only "
                    "raw records and firings can be re-sent")
    if letter.value is None or cut:
        return Plan(refusal="the letter keeps only the first 256 KiB of its input")
    try:
        record = RawRecord.from_bytes(letter.value)
        return Plan("record", None, envelope.pack([letter.value]), record)
    except SchemaError as exc:
        if letter.index is None and letter.kind == "record":
            try:
                envelope.unpack(letter.value)
                return Plan("envelope", letter.partition, letter.value)
            except envelope.EnvelopeError:
                pass
        return Plan(refusal=f"not a raw record this version reads ({exc})")


async def _read(settings: Settings, name: str, start: int | None,
                project: str | None) -> list[Any]:
    key = project.encode() if project is not None and name == topics.WARNINGS else None
    return [record async for record in read_recent(
        settings.bootstrap, settings.topic(name), key=key, since_ms=start,
        max_partition_fetch_bytes=8 * 1024 * 1024)]

