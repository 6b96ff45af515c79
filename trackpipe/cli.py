"""The `trackpipe` command: every role on its own (so it can be scaled) and `up` for all.

Errors a user can fix (a bad project definition, a missing Java, an unreachable cluster) end
with one line on stderr and exit status 2; nothing is changed when a command is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from schemas import topics
from schemas.identifiers import identifiers_of
from schemas.project import ProjectError, ProjectRecord, check_name
from schemas.trigger import Condition, TriggerRule
from trackpipe import quiet, registry
from trackpipe.children import Children
from trackpipe.kafka.launcher import LauncherError, LocalKafka, bootstrap_servers
from trackpipe.settings import Settings, SettingsError
from trackpipe.topics import create_topics

DEMO_PROJECT = "demo.example"


class CliError(Exception):
    """A refusal to print as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    # What trackpipe writes holds personal data and secrets (day logs, the spool, the
    # registry snapshot, tables): never readable by other users of the machine.
    os.umask(0o027)
    quiet.install()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler not in (run_gateway, run_worker, run_triggers, run_dashboard, run_up):
        # aiokafka logs the transient errors it retries itself; a command reports what failed.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        settings = Settings.from_env()
        return args.handler(settings, args) or 0
    except (CliError, ProjectError, LauncherError, SettingsError) as exc:
        print(f"trackpipe: error: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"trackpipe: error: Kafka is not reachable ({exc.__class__.__name__}); start it "
              "with `trackpipe kafka start` or set TRACKPIPE_KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `trackpipe logs ... | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackpipe", description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kafka = roles.add_parser("kafka", help="run a local Apache Kafka (KRaft) from Maven jars")
    kafka_cmds = kafka.add_subparsers(dest="action", required=True)
    start = kafka_cmds.add_parser("start", help="start the local broker(s) and wait for them")
    start.add_argument("--nodes", type=int, choices=(1, 3), default=None)
    start.set_defaults(handler=kafka_start)
    kafka_cmds.add_parser("stop", help="stop the local broker(s)").set_defaults(handler=kafka_stop)
    kafka_cmds.add_parser("status", help="show the local broker(s)").set_defaults(
        handler=kafka_status)

    topics_p = roles.add_parser("topics", help="create trackpipe's topics")
    topics_cmds = topics_p.add_subparsers(dest="action", required=True)
    topics_cmds.add_parser("create").set_defaults(handler=topics_create)

    projects = roles.add_parser("projects", help="the project registry")
    project_cmds = projects.add_subparsers(dest="action", required=True)
    for name, handler, text in (("add", projects_add, "register a new project"),
                                ("set", projects_set, "change a project (given options replace)")):
        sub = project_cmds.add_parser(name, help=text)
        sub.add_argument("name")
        add_project_options(sub, is_set=name == "set")
        sub.set_defaults(handler=handler)
    project_cmds.add_parser("list").set_defaults(handler=projects_list)
    for name, handler in (("show", projects_show), ("remove", projects_remove)):
        sub = project_cmds.add_parser(name)
        sub.add_argument("name")
        if name == "show":
            sub.add_argument("--reveal", action="store_true",
                             help="print the secrets themselves, not <set>")
        sub.set_defaults(handler=handler)
    apply = project_cmds.add_parser("apply", help="add or replace the projects of a TOML file")
    apply.add_argument("file", type=Path)
    apply.set_defaults(handler=projects_apply)

    triggers = roles.add_parser("triggers", help="rules that act on tracked actions")
    trigger_cmds = triggers.add_subparsers(dest="action", required=True)
    add = trigger_cmds.add_parser("add", help="add or replace a project's trigger")
    add.add_argument("project")
    add.add_argument("--name", required=True)
    add.add_argument("--event", required=True, help="the action's event name")
    add.add_argument("--where", nargs="+", action="append", default=[],
                     metavar="KEY OP [VALUE]", help="a condition: ce_/cv_/cs_ property, one of "
                     "= != contains > < exists, and a value (repeat for more; all must hold)")
    does = add.add_mutually_exclusive_group(required=True)
    does.add_argument("--webhook", metavar="URL", help="POST the action and profile here")
    does.add_argument("--js", metavar="CODE", help="run this in the visitor's browser on "
                      "their next tracking request")
    add.set_defaults(handler=triggers_add)
    listing = trigger_cmds.add_parser("list", help="a project's triggers")
    listing.add_argument("project")
    listing.set_defaults(handler=triggers_list)
    remove = trigger_cmds.add_parser("remove", help="remove a project's trigger")
    remove.add_argument("project")
    remove.add_argument("name")
    remove.set_defaults(handler=triggers_remove)
    trigger_cmds.add_parser("run", help="run the triggers service").set_defaults(
        handler=run_triggers)

    gateway = roles.add_parser("gateway", help="run the HTTP gateway")
    add_server_options(gateway)
    gateway.set_defaults(handler=run_gateway)

    worker = roles.add_parser("worker", help="run a stream processor worker (faust)")
    worker.add_argument("--web-port", type=int, help="the worker's web port "
                        "(TRACKPIPE_WORKER_WEB_PORT); give each local worker its own")
    worker.add_argument("--loglevel", default="warning")
    worker.set_defaults(handler=run_worker)

    dashboard = roles.add_parser("dashboard", help="serve the live dashboard on the admin port")
    dashboard.add_argument("--host", help="listen address (TRACKPIPE_ADMIN_HOST)")
    dashboard.add_argument("--port", type=int, help="listen port (TRACKPIPE_ADMIN_PORT)")
    dashboard.set_defaults(handler=run_dashboard)

    logs = roles.add_parser("logs", help="print a project's day logs as JSON lines")
    logs.add_argument("project")
    logs.add_argument("--date", type=_day, help="one day, YYYY-MM-DD (default: today, UTC)")
    logs.add_argument("--from", dest="first", type=_day, help="first day of a range")
    logs.add_argument("--to", dest="last", type=_day, help="last day of a range")
    logs.add_argument("--by", choices=("receipt", "event"), default="receipt",
                      help="select by receipt day (the files) or by event day (via the index)")
    logs.add_argument("--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(handler=print_logs)

    profile = roles.add_parser("profile", help="print a visitor's merged profile as JSON")
    profile.add_argument("project")
    who = profile.add_mutually_exclusive_group(required=True)
    who.add_argument("--id")
    who.add_argument("--email")
    who.add_argument("--cookie")
    profile.add_argument("--web-port", type=int, help="a worker's web port (any worker)")
    profile.set_defaults(handler=print_profile)

    up = roles.add_parser("up", help="everything: local Kafka, topics, demo project, gateway, "
                          "a processor worker, the triggers service and the dashboard")
    add_server_options(up)
    up.add_argument("--no-demo", action="store_true", help="do not register the demo project")
    up.set_defaults(handler=run_up)
    return parser


def add_project_options(parser: argparse.ArgumentParser, is_set: bool) -> None:
    parser.add_argument("--alias", action="append", dest="aliases", metavar="ALIAS")
    parser.add_argument("--secret", help="turn on secure tracking with this Basic-auth password")
    parser.add_argument("--exclude-ip", action="append", dest="exclude_ips", metavar="IP_OR_CIDR")
    parser.add_argument("--exclude-ua", action="append", dest="exclude_user_agents",
                        metavar="TEXT")
    parser.add_argument("--exclude-visitor", action="append", dest="exclude_visitors",
                        metavar="ID_EMAIL_OR_COOKIE")
    parser.add_argument("--quota", type=int, help="monthly action quota")
    parser.add_argument("--retention-days", type=int)
    if is_set:
        parser.add_argument("--no-secret", action="store_true", help="turn secure tracking off")
        parser.add_argument("--rotate-webhook-secret", action="store_true",
                            help="make a new webhook signing secret (printed once)")


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (TRACKPIPE_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="listen port (TRACKPIPE_HTTP_PORT)")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes")


# -- kafka -------------------------------------------------------------------------------------

def local_kafka(settings: Settings, nodes: int | None = None) -> LocalKafka:
    return LocalKafka(settings.kafka_dir, settings.local_kafka_port,
                      nodes or settings.local_kafka_nodes)


def kafka_start(settings: Settings, args: argparse.Namespace) -> None:
    if settings.kafka_bootstrap:
        raise CliError("TRACKPIPE_KAFKA_BOOTSTRAP is set: that cluster is used, none is started")
    print(local_kafka(settings, args.nodes).start())


def kafka_stop(settings: Settings, args: argparse.Namespace) -> None:
    for nodes in (3, 1):
        local_kafka(settings, nodes).stop()


def kafka_status(settings: Settings, args: argparse.Namespace) -> int:
    kafka = local_kafka(settings, 3 if (settings.kafka_dir / "node-3").exists() else 1)
    rows = kafka.status()
    for node, pid in rows:
        print(f"node {node}: " + (f"running (pid {pid})" if pid else "stopped"))
    running = all(pid for _, pid in rows)
    if running:
        print(f"bootstrap: {kafka.bootstrap}")
    return 0 if running else 1


def topics_create(settings: Settings, args: argparse.Namespace) -> None:
    created = asyncio.run(create_topics(settings, bootstrap_servers(settings)))
    print("created: " + ", ".join(created) if created else "all topics exist")


# -- projects ----------------------------------------------------------------------------------

def _registry(settings: Settings) -> tuple[str, str]:
    return bootstrap_servers(settings), settings.topic(topics.PROJECTS)


def _record_from_args(name: str, args: argparse.Namespace,
                      base: ProjectRecord | None = None) -> ProjectRecord:
    fields = {
        "aliases": base.aliases if base else (), "secret": base.secret if base else None,
        "exclude_ips": base.exclude_ips if base else (),
        "exclude_user_agents": base.exclude_user_agents if base else (),
        "exclude_visitors": base.exclude_visitors if base else (),
        "quota": base.quota if base else None,
        "retention_days": base.retention_days if base else 365,
        # every project signs its webhooks with a secret of its own, made here
        "webhook_secret": (base.webhook_secret if base and base.webhook_secret
                           and not getattr(args, "rotate_webhook_secret", False)
                           else secrets.token_urlsafe(32)),
    }
    for key in fields:
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = tuple(value) if isinstance(value, list) else value
    if getattr(args, "no_secret", False):
        fields["secret"] = None
    return ProjectRecord.build(name, **fields)  # type: ignore[arg-type]


async def _save(settings: Settings, record: ProjectRecord, must_exist: bool | None) -> None:
    bootstrap, topic = _registry(settings)
    projects = await registry.read_all(bootstrap, topic)
    if must_exist is True and record.name not in projects:
        raise CliError(f"project {record.name!r} does not exist (use `projects add`)")
    if must_exist is False and record.name in projects:
        raise CliError(f"project {record.name!r} exists already (use `projects set`)")
    registry.check_aliases(projects, record)
    await registry.write(bootstrap, topic, record.name, record)


def projects_add(settings: Settings, args: argparse.Namespace) -> None:
    record = _record_from_args(args.name, args)
    asyncio.run(_save(settings, record, must_exist=False))
    print(f"added {record.name}\nwebhook signing secret: {record.webhook_secret}")


def projects_set(settings: Settings, args: argparse.Namespace) -> None:
    name = check_name(args.name)
    bootstrap, topic = _registry(settings)
    current = asyncio.run(registry.read_all(bootstrap, topic)).get(name)
    if current is None:
        raise CliError(f"project {name!r} does not exist (use `projects add`)")
    record = _record_from_args(name, args, base=current)
    asyncio.run(_save(settings, record, must_exist=True))
    print(f"updated {record.name}")
    if record.webhook_secret != current.webhook_secret:
        print(f"webhook signing secret: {record.webhook_secret}")


def projects_list(settings: Settings, args: argparse.Namespace) -> None:
    for name, record in sorted(asyncio.run(registry.read_all(*_registry(settings))).items()):
        aliases = f" (aliases: {', '.join(record.aliases)})" if record.aliases else ""
        print(f"{name}{aliases}")


def projects_show(settings: Settings, args: argparse.Namespace) -> None:
    name = check_name(args.name)
    record = asyncio.run(registry.read_all(*_registry(settings))).get(name)
    if record is None:
        raise CliError(f"project {name!r} does not exist")
    shown = dataclasses.asdict(record) if args.reveal else record.public_dict()
    print(json.dumps(shown, indent=2))


def projects_remove(settings: Settings, args: argparse.Namespace) -> None:
    name = check_name(args.name)
    bootstrap, topic = _registry(settings)
    if name not in asyncio.run(registry.read_all(bootstrap, topic)):
        raise CliError(f"project {name!r} does not exist")
    asyncio.run(registry.write(bootstrap, topic, name, None))
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
        records.append(ProjectRecord.build(entry["name"], **options))

    async def apply_all() -> None:
        bootstrap, topic = _registry(settings)
        projects = await registry.read_all(bootstrap, topic)
        for i, record in enumerate(records):
            if record.webhook_secret is None:  # the file does not say: keep it, or make one
                known = projects.get(record.name)
                records[i] = dataclasses.replace(record, webhook_secret=(
                    known.webhook_secret if known and known.webhook_secret
                    else secrets.token_urlsafe(32)))
        for record in records:
            projects[record.name] = record
        for record in records:
            registry.check_aliases(projects, record)
        for record in records:
            await registry.write(bootstrap, topic, record.name, record)

    asyncio.run(apply_all())
    print(f"applied {len(records)} project(s): {', '.join(r.name for r in records)}")


# -- triggers ----------------------------------------------------------------------------------

def _triggers(settings: Settings, project: str) -> dict[str, TriggerRule]:
    """The project's rules by name; a project that is not registered is an error."""
    bootstrap = bootstrap_servers(settings)
    if project not in asyncio.run(registry.read_all(*_registry(settings))):
        raise CliError(f"project {project!r} does not exist (use `projects add`)")
    rules = asyncio.run(registry.read_all(bootstrap, settings.topic(topics.TRIGGERS),
                                          TriggerRule.from_bytes))
    return {r.name: r for r in rules.values() if r.project == project}


def triggers_add(settings: Settings, args: argparse.Namespace) -> None:
    rule = TriggerRule.build(args.project, args.name, args.event,
                             conditions=tuple(Condition.parse(w) for w in args.where),
                             webhook=args.webhook, js=args.js)
    replaced = rule.name in _triggers(settings, rule.project)
    asyncio.run(registry.write(bootstrap_servers(settings), settings.topic(topics.TRIGGERS),
                               rule.key, rule))
    print(f"{'replaced' if replaced else 'added'} trigger {rule.name} of {rule.project}")


def triggers_list(settings: Settings, args: argparse.Namespace) -> None:
    for _, rule in sorted(_triggers(settings, check_name(args.project)).items()):
        print(json.dumps(rule.shown(), ensure_ascii=False))


def triggers_remove(settings: Settings, args: argparse.Namespace) -> None:
    project, name = check_name(args.project), check_name(args.name, "trigger name")
    rule = _triggers(settings, project).get(name)
    if rule is None:
        raise CliError(f"project {project!r} has no trigger {name!r}")
    asyncio.run(registry.write(bootstrap_servers(settings), settings.topic(topics.TRIGGERS),
                               rule.key, None))
    print(f"removed trigger {name} of {project}")


def run_triggers(settings: Settings, args: argparse.Namespace) -> None:
    from triggers.service import TriggerService

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = TriggerService(settings, bootstrap_servers(settings))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await service.run(stop)

    asyncio.run(main())


def run_dashboard(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from trackpipe.dashboard.server import create_app

    overrides = {"admin_host": args.host, "admin_port": args.port}
    if any(v is not None for v in overrides.values()):
        settings = Settings.from_env(**overrides)  # validated again: a token off loopback
    uvicorn.run(create_app(settings, bootstrap_servers(settings)), host=settings.admin_host,
                port=settings.admin_port, log_level="warning", access_log=False)


# -- running -----------------------------------------------------------------------------------

def _server_env(settings: Settings, args: argparse.Namespace) -> Settings:
    """Apply --host/--port to this process and to the uvicorn workers it spawns."""
    if args.host:
        os.environ["TRACKPIPE_HTTP_HOST"] = args.host
    if args.port:
        os.environ["TRACKPIPE_HTTP_PORT"] = str(args.port)
    return Settings.from_env()


def serve_gateway(settings: Settings, workers: int) -> None:
    import uvicorn

    # proxy_headers off: the gateway believes X-Forwarded-For only from the configured trusted
    # proxies (gateway.addresses), never uvicorn's own default of any loopback peer.
    uvicorn.run("gateway.main:create_app", factory=True, host=settings.http_host,
                port=settings.http_port, workers=workers, loop="uvloop",
                http="gateway.http:GatewayProtocol", limit_concurrency=settings.max_connections,
                access_log=False, lifespan="on", log_level="info", proxy_headers=False)


def run_gateway(settings: Settings, args: argparse.Namespace) -> None:
    serve_gateway(_server_env(settings, args), args.workers)


def _day(text: str) -> str:
    try:
        return datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-27") from None


def print_logs(settings: Settings, args: argparse.Namespace) -> None:
    from processors.daylog import follow_lines, read_lines

    check_name(args.project)
    if args.date and (args.first or args.last):
        raise CliError("give --date or --from/--to, not both")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    first = args.date or args.first or args.last or today
    last = args.date or args.last or first
    if last < first:
        raise CliError(f"--to {last} is before --from {first}")
    days = [d.strftime("%Y-%m-%d") for d in _days(first, last)]
    root = settings.data_dir / "logs"
    event_days = set(days) if args.by == "event" else None
    lines = (follow_lines(root, args.project, days, event_days) if args.follow
             else read_lines(root, args.project, days, event_days))
    for record in lines:
        print(json.dumps(record, ensure_ascii=False), flush=args.follow)


def _days(first: str, last: str) -> list[datetime]:
    start = datetime.strptime(first, "%Y-%m-%d")
    count = (datetime.strptime(last, "%Y-%m-%d") - start).days + 1
    if count > 3660:
        raise CliError("a range of at most ten years, please")
    return [start + timedelta(days=n) for n in range(count)]


def print_profile(settings: Settings, args: argparse.Namespace) -> None:
    """Identifier → profile id (visitor or identity table) → profile, following merges."""
    project = check_name(args.project)
    ids = identifiers_of({"cv_id": args.id, "cv_email": args.email, "cookie": args.cookie})
    base = f"http://127.0.0.1:{args.web_port or settings.worker_web_port}/lookup/"
    token = settings.worker_token
    if ids.cookie:
        entry = _lookup(base + "visitor", f"{project}\ncookie:{ids.cookie}", token)
        profile_id = entry["state"]["profile"] if entry else None
    else:
        identifier = f"id:{ids.id}" if ids.id else f"email:{ids.email}"
        entry = _lookup(base + "identity", f"{project}\n{identifier}", token) if (
            ids.id or ids.email) else None
        profile_id = entry["profile"] if entry else None
    for _ in range(32):  # a chain of merges is short; a cycle would be a bug, not a hang
        if profile_id is None:
            raise CliError("no profile for that identifier (yet)")
        profile = _lookup(base + "profile", f"{project}\n{profile_id}", token)
        if profile is None:
            raise CliError(f"profile {profile_id} is not built yet; try again in a moment")
        if not profile["merged_into"]:
            from schemas.profile import shown

            print(json.dumps(shown(profile), indent=2, ensure_ascii=False))
            return
        profile_id = profile["merged_into"]
    raise CliError("the merge chain is too long")


def _lookup(url: str, key: str, token: str = "") -> Any:
    import urllib.error
    import urllib.parse
    import urllib.request

    request = urllib.request.Request(f"{url}?{urllib.parse.urlencode({'key': key})}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise CliError("the worker asks for its token: set TRACKPIPE_WORKER_TOKEN") from None
        raise CliError(f"the worker at {url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"no processor worker answers at {url} ({exc}); is `trackpipe worker` "
                       "running? (--web-port picks the worker)") from None


def run_worker(settings: Settings, args: argparse.Namespace) -> None:
    import mode.loop

    mode.loop.use("uvloop")  # a fifth more events a second than asyncio's loop (benchmarks.md)
    from faust.worker import Worker as FaustWorker

    from processors.worker import Worker

    worker = Worker(settings, bootstrap_servers(settings),
                    args.web_port or settings.worker_web_port)
    FaustWorker(worker.app, loglevel=args.loglevel, quiet=True,
                redirect_stdouts=False).execute_from_commandline()


def run_up(settings: Settings, args: argparse.Namespace) -> None:
    settings = _server_env(settings, args)
    kafka = None if settings.kafka_bootstrap else local_kafka(settings)
    if kafka is not None:
        print("starting the local Kafka...", flush=True)
        kafka.start()
    try:
        bootstrap = bootstrap_servers(settings)
        asyncio.run(create_topics(settings, bootstrap))
        if not args.no_demo:
            asyncio.run(_ensure_demo(settings))
        # The processors run as their own process: faust and uvicorn each own an event loop.
        children = Children({name: [sys.executable, "-m", "trackpipe.cli", *role]
                             for name, role in (("worker", ["worker"]),
                                                ("triggers service", ["triggers", "run"]),
                                                ("dashboard", ["dashboard"]))},
                            {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": bootstrap})
        children.start()
        url = f"http://{settings.http_host}:{settings.http_port}"
        print(f"\ntrackpipe is up: Kafka at {bootstrap}, gateway at {url}\n"
              "try:\n"
              f"  curl -i '{url}/track/ce?project={DEMO_PROJECT}&event=pv&cookie=c1"
              "&ce_url=%2Fhome&response=json'\n"
              f"logs: .venv/bin/trackpipe logs {DEMO_PROJECT} --follow\n"
              f"dashboard: http://{settings.admin_host}:{settings.admin_port}/\n"
              "Ctrl-C stops everything.\n", flush=True)
        if sys.stdout.isatty():
            threading.Thread(target=_status_line, args=(settings,), daemon=True).start()
        try:
            serve_gateway(settings, args.workers)
        finally:
            children.stop()
    finally:
        if kafka is not None:
            print("stopping the local Kafka...", flush=True)
            kafka.stop()


def _status_line(settings: Settings) -> None:
    """Keep one terminal line with the dashboard's numbers, rewritten every second."""
    import urllib.request

    from trackpipe.dashboard.summary import status_line

    url = f"http://127.0.0.1:{settings.admin_port}/api/summary"
    if settings.admin_token:
        url += f"?token={settings.admin_token}"
    while True:
        time.sleep(1)
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                summary = json.loads(answer.read())["summary"]
        except (OSError, ValueError, KeyError):
            continue
        if summary:
            sys.stdout.write("\r\x1b[2K" + status_line(summary))
            sys.stdout.flush()


async def _ensure_demo(settings: Settings) -> None:
    bootstrap, topic = _registry(settings)
    if DEMO_PROJECT not in await registry.read_all(bootstrap, topic):
        await registry.write(bootstrap, topic, DEMO_PROJECT, ProjectRecord.build(DEMO_PROJECT))


if __name__ == "__main__":
    sys.exit(main())
