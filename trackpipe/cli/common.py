"""What the command groups share: the one-line error, dates, the registry, worker lookups.

Nothing here is a command; the runtime below (settings, Kafka helpers, the registry follower)
never imports the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from runtime import registry
from runtime.settings import Settings
from schemas import topics
from schemas.project import ProjectRecord, check_name

Handler = Callable[[Settings, argparse.Namespace], int | None]
MAX_DAYS = 3660


class CliError(Exception):
    """A refusal to print as one line (exit status 2)."""


def command(group: Any, name: str, handler: Handler, summary: str,
            example: str) -> argparse.ArgumentParser:
    """A subcommand with its one-line summary (in its group's list and atop its --help) and
    an example at the bottom of its --help."""
    parser = group.add_parser(name, help=summary, description=summary,
                              epilog="example:\n  " + example.replace("\n", "\n  "),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=handler)
    return parser


def group(roles: Any, name: str, summary: str) -> Any:
    parser = roles.add_parser(name, help=summary, description=summary)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def day(text: str) -> str:
    """An argparse type: a YYYY-MM-DD date, written back with four digits of year (glibc's
    ``%Y`` writes 999 for the year 999, which ``fromisoformat`` refuses)."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-27") from None


def count(text: str) -> int:
    """An argparse type: a whole number, at least 1."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is less than 1")
    return number


def check_range(first: str | None, last: str | None) -> None:
    if first and last and last < first:
        raise CliError(f"--to {last} is before --from {first}")


def days(first: str, last: str) -> list[str]:
    """Every day from ``first`` to ``last`` (at most ten years of them)."""
    start = datetime.fromisoformat(first)
    length = (datetime.fromisoformat(last) - start).days + 1
    if length > MAX_DAYS:
        raise CliError("a range of at most ten years, please")
    return [(start + timedelta(days=n)).date().isoformat() for n in range(length)]


def registry_topic(settings: Settings) -> tuple[str, str]:
    return settings.bootstrap, settings.topic(topics.PROJECTS)


def projects(settings: Settings) -> dict[str, ProjectRecord]:
    return asyncio.run(registry.read_all(*registry_topic(settings)))


def project(settings: Settings, name: str) -> ProjectRecord:
    """The registered project ``name``, or a clear refusal."""
    record = projects(settings).get(check_name(name))
    if record is None:
        raise CliError(f"project {name!r} does not exist (see `trackpipe projects list`)")
    return record


def lookup(settings: Settings, web_port: int | None, table: str, key: str) -> Any:
    """A worker's answer for ``key`` of ``table`` (None: not there)."""
    if web_port:
        base = f"http://127.0.0.1:{web_port}"
    else:
        base = settings.worker_base_url
    url = f"{base}/lookup/{table}?{urllib.parse.urlencode({'key': key})}"
    request = urllib.request.Request(url, headers={
        "Authorization": f"Bearer {settings.worker_token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise CliError("the worker asks for its token: set TRACKPIPE_WORKER_TOKEN") from None
        raise CliError(f"the worker at {base} answered {exc.code}") from None
    except (urllib.error.URLError, OSError):
        raise CliError(f"no worker answered on {base} — is 'trackpipe worker' running? "
                       "(--web-port picks another worker)") from None
