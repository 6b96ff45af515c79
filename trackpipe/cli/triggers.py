"""``trackpipe triggers …``: rules that act on tracked actions (a webhook, or JavaScript run in
the visitor's browser), kept in a compacted topic the triggers service follows."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from runtime import registry
from runtime.settings import Settings
from schemas import topics
from schemas.project import check_name
from schemas.trigger import Condition, TriggerRule
from trackpipe.cli.common import CliError, command, group, project
from trackpipe.cli.roles import run_triggers


def register(roles: Any) -> None:
    cmds = group(roles, "triggers", "rules that act on tracked actions")
    add = command(cmds, "add", triggers_add, "add or replace a project's trigger",
                  "trackpipe triggers add shop.example --name big-order --event purchase \\\n"
                  "    --where ce_total '>' 100 --webhook https://hooks.example.com/orders")
    add.add_argument("project", help="the project whose actions it watches")
    add.add_argument("--name", required=True, help="the trigger's name (adding it again "
                     "replaces it)")
    add.add_argument("--event", required=True, help="the action's event name")
    add.add_argument("--where", nargs="+", action="append", default=[],
                     metavar="KEY OP [VALUE]", help="a condition: ce_/cv_/cs_ property, one of "
                     "= != contains > < exists, and a value (repeat for more; all must hold)")
    does = add.add_mutually_exclusive_group(required=True)
    does.add_argument("--webhook", metavar="URL", help="POST the action and profile here "
                      "(signed with the project's webhook secret)")
    does.add_argument("--js", metavar="CODE", help="run this in the visitor's browser on "
                      "their next tracking request")
    listing = command(cmds, "list", triggers_list, "a project's triggers, one JSON per line",
                      "trackpipe triggers list shop.example")
    listing.add_argument("project", help="the project")
    remove = command(cmds, "remove", triggers_remove, "remove a project's trigger",
                     "trackpipe triggers remove shop.example big-order")
    remove.add_argument("project", help="the project")
    remove.add_argument("name", help="the trigger's name")
    command(cmds, "run", run_triggers, "run the triggers service (a long-running role)",
            "trackpipe triggers run").set_defaults(serves=True)


def _rules(settings: Settings, name: str) -> dict[str, TriggerRule]:
    """The project's rules by name; a project that is not registered is an error."""
    name = project(settings, name).name
    rules = asyncio.run(registry.read_all(settings.bootstrap,
                                          settings.topic(topics.TRIGGERS),
                                          TriggerRule.from_bytes))
    return {r.name: r for r in rules.values() if r.project == name}


def triggers_add(settings: Settings, args: argparse.Namespace) -> None:
    rule = TriggerRule.build(args.project, args.name, args.event,
                             conditions=tuple(Condition.parse(w) for w in args.where),
                             webhook=args.webhook, js=args.js)
    replaced = rule.name in _rules(settings, rule.project)
    asyncio.run(registry.write(settings.bootstrap, settings.topic(topics.TRIGGERS),
                               rule.key, rule))
    print(f"{'replaced' if replaced else 'added'} trigger {rule.name} of {rule.project}")


def triggers_list(settings: Settings, args: argparse.Namespace) -> None:
    for _, rule in sorted(_rules(settings, args.project).items()):
        print(json.dumps(rule.shown(), ensure_ascii=False))


def triggers_remove(settings: Settings, args: argparse.Namespace) -> None:
    name = check_name(args.name, "trigger name")
    rule = _rules(settings, args.project).get(name)
    if rule is None:
        raise CliError(f"project {args.project!r} has no trigger {name!r}")
    asyncio.run(registry.write(settings.bootstrap, settings.topic(topics.TRIGGERS),
                               rule.key, None))
    print(f"removed trigger {name} of {rule.project}")
