"""The `trackpipe` command: every role on its own (so it can be scaled), `up` for all, and the
read side.

One module per command group: ``kafka`` (a local Kafka and the topics), ``projects``,
``triggers``, ``roles`` (gateway, worker, dashboard), ``reading`` (logs, profile, timeline,
query), ``problems`` (warnings, dead letters), ``up`` and ``demo`` (traffic to try it with);
``common`` holds what they share.
Errors a user can fix (a bad project definition, a missing Java, an unreachable cluster or
worker, bad SQL) end with one line on stderr and exit status 2; nothing is changed when a
command is refused.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from aiokafka.errors import KafkaError

from runtime.settings import Settings, SettingsError
from schemas.project import ProjectError
from trackpipe import quiet
from trackpipe.cli import demo, kafka, output, problems, projects, reading, roles, triggers, up
from trackpipe.cli.common import CliError
from trackpipe.kafka.launcher import LauncherError

__all__ = ["CliError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    # What trackpipe writes holds personal data and secrets (day logs, the spool, the
    # registry snapshot, tables): never readable by other users of the machine.
    os.umask(0o027)
    quiet.install()
    args = build_parser().parse_args(argv)
    if not getattr(args, "serves", False):
        # aiokafka logs the transient errors it retries itself; a command reports what failed.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        settings = Settings.from_env()
        return args.handler(settings, args) or 0
    except (CliError, ProjectError, LauncherError, SettingsError) as exc:
        # escaped: a database's error can quote what a sender wrote
        print(f"trackpipe: error: {output.visible(str(exc))}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"trackpipe: error: Kafka is not reachable ({exc.__class__.__name__}) — start it "
              "with 'trackpipe kafka start' or set TRACKPIPE_KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `trackpipe logs ... | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """argparse's usage and one line of error, what it quotes escaped."""
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {output.visible(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trackpipe", description="A Kafka-backed pipeline for the Woopra HTTP tracking "
        "API: run its roles, manage projects and triggers, read what was collected.",
        epilog="example:\n  trackpipe up\n  trackpipe COMMAND --help",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"trackpipe {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (up, demo, roles, projects, triggers, reading, problems, kafka):
        group.register(commands)
    return parser


def _version() -> str:
    try:
        return version("trackpipe")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
