"""The read side: ``logs`` (a project's day logs), ``profile`` (a person's merged profile, from
a worker), ``timeline`` (a person's actions, from the timeline index) and ``query`` (SQL over
the day logs, with DuckDB). ``logs``, ``timeline`` and ``query`` read the data folder, never
the topics (``timeline`` and ``query`` ask the registry only for the project's retention):
they work while the pipeline runs, and ``logs`` on a copy of the folder. What they print of
senders' values is escaped (``output``): a value cannot steer the terminal."""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import time
from datetime import UTC, datetime
from typing import Any

from logstore.layout import DAY_MS
from logstore.reading import UnreadableLine, follow_lines, read_lines
from logstore.retention import cutoff_day
from logstore.timeline import Timeline, shown_range
from runtime.settings import Settings
from schemas.identifiers import identifiers_of
from schemas.project import check_name
from trackpipe.cli import output
from trackpipe.cli.common import CliError, check_range, command, count, day, days, lookup, project

_SURROGATE = re.compile("[\ud800-\udfff]")


def register(roles: Any) -> None:
    logs = command(roles, "logs", print_logs, "print a project's day logs as JSON lines, in "
                   "receipt order", "trackpipe logs demo.example --from 2026-12-01 --to "
                   "2026-12-02\ntrackpipe logs demo.example --follow")
    logs.add_argument("project", help="the project")
    logs.add_argument("--date", type=day, metavar="DAY",
                      help="one day, YYYY-MM-DD (default: today, UTC)")
    logs.add_argument("--from", dest="first", type=day, metavar="DAY",
                      help="first day of a range")
    logs.add_argument("--to", dest="last", type=day, metavar="DAY", help="last day of a range")
    logs.add_argument("--by", choices=("receipt", "event"), default="receipt",
                      help="select by receipt day (the files) or by event day (via the index)")
    logs.add_argument("--follow", action="store_true", help="keep printing new lines")

    profile = command(roles, "profile", print_profile, "print a person's merged profile as "
                      "JSON (asks a running worker)",
                      "trackpipe profile demo.example --email ada@example.com")
    profile.add_argument("project", help="the project")
    who(profile)
    profile.add_argument("--web-port", type=int, help="a worker's web port (any worker; "
                         "default: TRACKPIPE_WORKER_URL or TRACKPIPE_WORKER_WEB_PORT)")

    timeline = command(roles, "timeline", print_timeline, "a person's actions in event-time "
                       "order, across their devices and merged profiles",
                       "trackpipe timeline demo.example --email ada@example.com --limit 50\n"
                       "trackpipe timeline demo.example --cookie c1 --json | jq .event")
    timeline.add_argument("project", help="the project")
    who(timeline)
    timeline.add_argument("--from", dest="first", type=day, metavar="DAY",
                          help="first event day, YYYY-MM-DD (default: the retention's first)")
    timeline.add_argument("--to", dest="last", type=day, metavar="DAY",
                          help="last event day (default: now; later events are not shown)")
    timeline.add_argument("--limit", type=count, default=1000, metavar="N",
                          help="the N latest events, printed oldest first (default: 1000)")
    timeline.add_argument("--json", action="store_true",
                          help="each event's whole day-log line, one JSON per line")

    query = command(roles, "query", run_query, "run SQL over a project's day logs (DuckDB; "
                    "views: actions, visits, merges, lines)",
                    "trackpipe query demo.example \"SELECT day, count(*) AS actions FROM "
                    "actions GROUP BY day ORDER BY day\"\n"
                    "trackpipe query demo.example \"SELECT campaign, count(*) FROM actions "
                    "WHERE campaign IS NOT NULL GROUP BY 1 ORDER BY 2 DESC\" --format csv")
    query.add_argument("project", help="the project")
    query.add_argument("sql", help="one SELECT statement over the views")
    query.add_argument("--from", dest="first", type=day, metavar="DAY",
                       help="first receipt day to read (default: all)")
    query.add_argument("--to", dest="last", type=day, metavar="DAY",
                       help="last receipt day to read")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="table (default), csv with a header, or JSON lines")
    query.add_argument("--max-rows", type=count, metavar="N",
                       help="print at most N rows; a query with more stops with an error "
                       "(default: TRACKPIPE_QUERY_MAX_ROWS, 10000)")


def who(parser: argparse.ArgumentParser) -> None:
    person = parser.add_mutually_exclusive_group(required=True)
    person.add_argument("--id", help="the person's id (cv_id)")
    person.add_argument("--email", help="the person's email (cv_email)")
    person.add_argument("--cookie", help="one of the person's device cookies")


def identifier_of(args: argparse.Namespace) -> str:
    """``id:…``, ``email:…`` or ``cookie:…``, cleaned as the processors clean them."""
    given = {"cv_id": args.id, "cv_email": args.email, "cookie": args.cookie}
    names = identifiers_of({name: _valid(value) for name, value in given.items()}).names()
    if not names:
        raise CliError("that identifier means nobody (empty, 'anonymous', 'null', ...)")
    return names[0]


def _valid(text: str | None) -> str | None:
    """``text`` as the gateway keeps it: a surrogate (from bytes that are not UTF-8 in the
    command line) becomes U+FFFD."""
    return None if text is None else _SURROGATE.sub("\ufffd", text)


def print_logs(settings: Settings, args: argparse.Namespace) -> None:
    check_name(args.project)
    if args.date and (args.first or args.last):
        raise CliError("give --date or --from/--to, not both")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    first = args.date or args.first or args.last or today
    last = args.date or args.last or first
    check_range(first, last)
    wanted = days(first, last)
    root = settings.data_dir / "logs"
    if not (root / args.project).is_dir():
        if not args.follow:
            raise CliError(no_day_logs(settings, args.project))
        project(settings, args.project)  # an unknown one is refused; a known one's first lines
    event_days = set(wanted) if args.by == "event" else None
    lines = (follow_lines(root, args.project, wanted, event_days) if args.follow
             else read_lines(root, args.project, wanted, event_days))
    try:
        for record in lines:
            print(output.json_text(record), flush=args.follow)
    except UnreadableLine as exc:
        raise CliError(str(exc)) from None
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise CliError(f"cannot read the day logs: {exc}") from None


def print_profile(settings: Settings, args: argparse.Namespace) -> None:
    """Identifier → profile id (visitor or identity table) → profile, following merges."""
    name = check_name(args.project)
    identifier = identifier_of(args)
    if identifier.startswith("cookie:"):
        entry = lookup(settings, args.web_port, "visitor", f"{name}\n{identifier}")
        profile_id = entry["state"]["profile"] if entry else None
    else:
        entry = lookup(settings, args.web_port, "identity", f"{name}\n{identifier}")
        profile_id = entry["profile"] if entry else None
    seen: set[str] = set()
    while len(seen) < settings.max_family_profiles:
        if profile_id is None:
            raise CliError("no profile for that identifier (yet)")
        if profile_id in seen:
            raise CliError(f"the merges of profile {profile_id} form a cycle")
        seen.add(profile_id)
        profile = lookup(settings, args.web_port, "profile", f"{name}\n{profile_id}")
        if profile is None:
            raise CliError(f"profile {profile_id} is not built yet; try again in a moment")
        if not profile["merged_into"]:
            from schemas.profile import shown

            print(output.json_text(shown(profile), indent=2))
            return
        profile_id = profile["merged_into"]
    raise CliError(f"the chain of merges is longer than {settings.max_family_profiles:,} "
                   "profiles (TRACKPIPE_MAX_FAMILY_PROFILES)")


def print_timeline(settings: Settings, args: argparse.Namespace) -> None:
    check_name(args.project)
    check_range(args.first, args.last)
    identifier = identifier_of(args)
    record = project(settings, args.project)  # its retention says what is shown
    first, last = shown_range(
        int(time.time() * 1000), record.retention_days,
        _day_ms(args.first) if args.first else None,
        _day_ms(args.last) + DAY_MS - 1 if args.last else None)
    try:
        timeline = Timeline(settings.data_dir / "logs" / record.name)
    except sqlite3.Error as exc:
        raise CliError(f"cannot open the timeline index of {record.name}: {exc}") from None
    try:
        family = timeline.family_of(identifier, settings.max_family_profiles)
        if not family.profiles:
            raise CliError(f"{identifier} is in no day log of {record.name} (yet)")
        events = list(timeline.read(timeline.locate(family.profiles, first, last,
                                                    args.limit)))
    except sqlite3.Error as exc:
        raise CliError(f"cannot read the timeline index of {record.name}: {exc}") from None
    except UnreadableLine as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot read the day logs of {record.name}: {exc}") from None
    finally:
        timeline.close()
    if args.json:
        for event in events:
            print(output.json_text(event))
    else:
        output.write(["event time", "event", "type", "visit", "received", "visitor key",
                      "properties"], [[_row(e) for e in events]], "table", noun="event")
    if family.cut:
        note(f"this person's merges join more than {settings.max_family_profiles:,} profiles: "
             "the events shown are those of the nearest (TRACKPIPE_MAX_FAMILY_PROFILES)")


def no_day_logs(settings: Settings, name: str) -> str:
    return (f"{name} has no day logs in {settings.data_dir / 'logs'} (is it a project? "
            "see `trackpipe projects list`)")


def note(text: str) -> None:
    """A line on stderr about what was printed (it never mixes with the output)."""
    print(f"trackpipe: note: {text}", file=sys.stderr)


def _row(event: dict[str, Any]) -> tuple[Any, ...]:
    # an identify sets the visitor's properties (cv_*): those are what it did
    said = "visitor_properties" if event.get("type") == "identify" else "properties"
    return (_time(event.get("event_ms")), event.get("event"), event.get("type"),
            event.get("visit") or "", _time(event.get("received_ms")),
            event.get("visitor_key"), output.json_text(event.get(said) or {}))


def _time(ms: Any) -> str:
    return output.when(ms) if isinstance(ms, int) else ""


def _day_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def run_query(settings: Settings, args: argparse.Namespace) -> None:
    from logstore import sql as logsql

    name = check_name(args.project)
    folder = settings.data_dir / "logs" / name
    if not folder.is_dir():
        raise CliError(no_day_logs(settings, name))
    check_range(args.first, args.last)
    record = project(settings, name)  # days past its retention are not read
    kept_from = (cutoff_day(int(time.time() * 1000), record.retention_days)
                 if record.retention_days else None)
    try:
        with logsql.connect(folder, args.first, args.last, settings, kept_from) as views:
            result = views.query(args.sql, args.max_rows)
            output.write(result.columns, result.chunks(), args.format)
    except logsql.QueryError as exc:
        raise CliError(f"query: {exc}") from None
    if views.cut:
        note(f"{views.cut:,} people's merges join more than {settings.max_family_profiles:,} "
             "profiles: each counts as several people beyond that "
             "(TRACKPIPE_MAX_FAMILY_PROFILES)")
    if result.more:
        raise CliError(f"query: more than {result.max_rows:,} rows; the first are printed "
                       "(--max-rows N prints more, or add a LIMIT)")
