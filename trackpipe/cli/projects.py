"""``trackpipe projects …``: the project registry (a compacted Kafka topic every gateway and
worker follows, so a change applies everywhere within seconds, without a restart)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from runtime import registry
from runtime.settings import Settings
from schemas.project import ProjectRecord, check_name, new_webhook_secret
from trackpipe.cli.common import CliError, command, group, project, projects, registry_topic


def register(roles: Any) -> None:
    cmds = group(roles, "projects", "the project registry: who may send, and what is kept")
    add = command(cmds, "add", projects_add, "register a new project (prints its webhook "
                  "signing secret)", "trackpipe projects add shop.example --alias "
                  "www.shop.example --retention-days 90")
    add.add_argument("name", help="the project's name, as senders give it in project=")
    add_project_options(add, is_set=False)
    change = command(cmds, "set", projects_set, "change a project: the options given replace "
                     "what it has", "trackpipe projects set shop.example --quota 1000000")
    change.add_argument("name", help="the project to change")
    add_project_options(change, is_set=True)
    command(cmds, "list", projects_list, "every project, with its aliases",
            "trackpipe projects list")
    show = command(cmds, "show", projects_show, "one project's settings as JSON (secrets "
                   "shown as <set>)", "trackpipe projects show shop.example")
    show.add_argument("name", help="the project to show")
    show.add_argument("--reveal", action="store_true",
                      help="print the secrets themselves, not <set>")
    remove = command(cmds, "remove", projects_remove, "unregister a project (its day logs "
                     "stay on disk)", "trackpipe projects remove shop.example")
    remove.add_argument("name", help="the project to remove")
    apply = command(cmds, "apply", projects_apply, "add or replace every [[project]] of a "
                    "TOML file (all validated before any is written)",
                    "trackpipe projects apply projects.toml")
    apply.add_argument("file", type=Path, help="a TOML file of [[project]] tables")


def add_project_options(parser: argparse.ArgumentParser, is_set: bool) -> None:
    parser.add_argument("--alias", action="append", dest="aliases", metavar="ALIAS",
                        help="another name senders may use (repeat for more)")
    parser.add_argument("--secret", help="turn on secure tracking: requests must carry this "
                        "Basic-auth password")
    parser.add_argument("--exclude-ip", action="append", dest="exclude_ips",
                        metavar="IP_OR_CIDR", help="drop requests from these addresses "
                        "(repeat for more)")
    parser.add_argument("--exclude-ua", action="append", dest="exclude_user_agents",
                        metavar="TEXT", help="drop requests whose User-Agent contains TEXT")
    parser.add_argument("--exclude-visitor", action="append", dest="exclude_visitors",
                        metavar="ID_EMAIL_OR_COOKIE", help="drop this visitor's requests")
    parser.add_argument("--quota", type=int, help="actions a month; beyond it actions are "
                        "logged but trigger nothing")
    parser.add_argument("--retention-days", type=int, help="days the day logs are kept "
                        "(default 365); older days are removed by the workers")
    parser.add_argument("--ip-anonymize", action=argparse.BooleanOptionalAction,
                        help="keep no full address: zero the last octet of IPv4 and the last "
                        "80 bits of IPv6 after the location lookup, before anything is logged "
                        "or published (default: off, the full address is kept)")
    parser.add_argument("--location", action=argparse.BooleanOptionalAction,
                        help="look addresses up for country and city (default: on; "
                        "--no-location turns it off)")
    if is_set:
        parser.add_argument("--no-secret", action="store_true", help="turn secure tracking off")
        parser.add_argument("--rotate-webhook-secret", action="store_true",
                            help="make a new webhook signing secret (printed once)")


def _record_from_args(name: str, args: argparse.Namespace,
                      base: ProjectRecord | None = None) -> ProjectRecord:
    fields = {
        "aliases": base.aliases if base else (), "secret": base.secret if base else None,
        "exclude_ips": base.exclude_ips if base else (),
        "exclude_user_agents": base.exclude_user_agents if base else (),
        "exclude_visitors": base.exclude_visitors if base else (),
        "quota": base.quota if base else None,
        "retention_days": base.retention_days if base else 365,
        "ip_anonymize": base.ip_anonymize if base else False,
        "location": base.location if base else True,
        # every project signs its webhooks with a secret of its own, made here
        "webhook_secret": (base.webhook_secret if base and base.webhook_secret
                           and not getattr(args, "rotate_webhook_secret", False)
                           else new_webhook_secret()),
    }
    for key in fields:
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = tuple(value) if isinstance(value, list) else value
    if getattr(args, "no_secret", False):
        fields["secret"] = None
    return ProjectRecord.build(name, **fields)  # type: ignore[arg-type]


async def _save(settings: Settings, record: ProjectRecord, must_exist: bool) -> None:
    bootstrap, topic = registry_topic(settings)
    known = await registry.read_all(bootstrap, topic)
    if must_exist and record.name not in known:
        raise CliError(f"project {record.name!r} does not exist (use `projects add`)")
    if not must_exist and record.name in known:
        raise CliError(f"project {record.name!r} exists already (use `projects set`)")
    registry.check_aliases(known, record)
    await registry.write(bootstrap, topic, record.name, record)


def projects_add(settings: Settings, args: argparse.Namespace) -> None:
    record = _record_from_args(args.name, args)
    asyncio.run(_save(settings, record, must_exist=False))
    print(f"added {record.name}\nwebhook signing secret: {record.webhook_secret}")


def projects_set(settings: Settings, args: argparse.Namespace) -> None:
    current = project(settings, args.name)
    record = _record_from_args(current.name, args, base=current)
    asyncio.run(_save(settings, record, must_exist=True))
    print(f"updated {record.name}")
    if record.webhook_secret != current.webhook_secret:
        print(f"webhook signing secret: {record.webhook_secret}")


def projects_list(settings: Settings, args: argparse.Namespace) -> None:
    for name, record in sorted(projects(settings).items()):
        aliases = f" (aliases: {', '.join(record.aliases)})" if record.aliases else ""
        print(f"{name}{aliases}")


def projects_show(settings: Settings, args: argparse.Namespace) -> None:
    record = project(settings, args.name)
    shown = dataclasses.asdict(record) if args.reveal else record.public_dict()
    print(json.dumps(shown, indent=2))


def projects_remove(settings: Settings, args: argparse.Namespace) -> None:
    name = project(settings, args.name).name
    asyncio.run(registry.write(*registry_topic(settings), name, None))
    print(f"removed {name}")


def projects_apply(settings: Settings, args: argparse.Namespace) -> None:
    """Config as code: every [[project]] of the file is validated first, then written."""
    try:
        document = tomllib.loads(args.file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    entries = document.get("project", [])
    if not isinstance(entries, list) or not entries:
        raise CliError(f"{args.file} has no [[project]] tables")
    records = []
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise CliError("every [[project]] needs a name")
        unknown = set(entry) - set(ProjectRecord.__dataclass_fields__)
        if unknown:
            raise CliError(f"project {entry['name']!r}: unknown keys {sorted(unknown)}")
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()
                   if k != "name"}
        records.append(ProjectRecord.build(check_name(entry["name"]), **options))

    async def apply_all() -> None:
        bootstrap, topic = registry_topic(settings)
        known = await registry.read_all(bootstrap, topic)
        for i, record in enumerate(records):
            if record.webhook_secret is None:  # the file does not say: keep it, or make one
                had = known.get(record.name)
                records[i] = dataclasses.replace(record, webhook_secret=(
                    had.webhook_secret if had and had.webhook_secret
                    else new_webhook_secret()))
        for record in records:
            known[record.name] = record
        for record in records:
            registry.check_aliases(known, record)
        for record in records:
            await registry.write(bootstrap, topic, record.name, record)

    asyncio.run(apply_all())
    print(f"applied {len(records)} project(s): {', '.join(r.name for r in records)}")
