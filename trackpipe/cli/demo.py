"""``trackpipe demo traffic``: made-up people browsing, signing up and buying, sent to the
local gateway as the SDKs would send them (``trackpipe.traffic`` makes the requests), so that
the dashboard, the timelines and ``query`` show something real.

Each person's requests go one after the other, as one browser's would (an identify before the
purchase it enables); ``--visitors`` people browse at once, and all of them together send at
most ``--rate`` requests a second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from runtime.settings import Settings
from trackpipe import readiness
from trackpipe.cli.common import CliError, command, count, group
from trackpipe.cli.up import DEMO_PROJECT
from trackpipe.console import Console
from trackpipe.traffic import Journey, Request, Traffic

EMPTY_SCRIPT = (b"", b";")  # a JavaScript answer without a JS action in it


def register(roles: Any) -> None:
    demo = group(roles, "demo", "try trackpipe on made-up traffic")
    traffic = command(
        demo, "traffic", run_traffic, "send SDK-like traffic to the local gateway: pageviews "
        "from campaigns with browser user agents, pings, identifies that merge two devices, "
        "pushes, purchases that fire the demo trigger",
        "trackpipe demo traffic\ntrackpipe demo traffic --rate 100 --visitors 50 --duration 300")
    traffic.add_argument("--rate", type=_rate, default=20.0, metavar="R",
                         help="requests a second, all people together (default: 20)")
    traffic.add_argument("--visitors", type=count, default=10, metavar="N",
                         help="people browsing at the same time (default: 10)")
    traffic.add_argument("--duration", type=_rate, default=60.0, metavar="S",
                         help="seconds to send for (default: 60; Ctrl-C stops sooner)")
    traffic.add_argument("--project", default=DEMO_PROJECT,
                         help=f"the project to send for (default: {DEMO_PROJECT}, which "
                         "`trackpipe up` registers with its trigger)")
    traffic.add_argument("--seed", type=int, help="the same seed sends the same people")


def _rate(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not above 0")
    return value


@dataclass
class Tally:
    """What was sent and what the gateway answered."""
    statuses: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    js_actions: int = 0          # JavaScript answers that carried a trigger's JS action
    people: list[Journey] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def line(self) -> str:
        answers = ", ".join(f"{status} ×{n:,}" for status, n in sorted(self.statuses.items()))
        return (f"sent {self.sent:,} requests for {len(self.people):,} people ({answers or '-'});"
                f" {self.kinds['purchase']:,} purchases, {self.js_actions:,} JS actions handed "
                "out")


class Refused(Exception):
    """The gateway turned the project down: nothing more is worth sending."""


def run_traffic(settings: Settings, args: argparse.Namespace) -> None:
    base = readiness.local_url(settings.http_host, settings.http_port, "")
    screen = Console(1, os.isatty(1))
    started = time.monotonic()
    try:
        tally = asyncio.run(send(base, Traffic(args.project, args.seed), args.rate,
                                 args.visitors, args.duration, screen))
    except aiohttp.ClientConnectionError:
        raise CliError(f"no gateway answered at {base}: is `trackpipe up` running? "
                       "(TRACKPIPE_HTTP_HOST/PORT say where)") from None
    except Refused as exc:
        raise CliError(str(exc)) from None
    screen.end_status()
    screen.say(f"{tally.line()} in {time.monotonic() - started:.1f} s")
    if tally.people:
        dashboard = readiness.local_url(settings.admin_host, settings.admin_port, "/")
        screen.say(
            "see them:\n"
            f"  .venv/bin/trackpipe timeline {args.project} --email {tally.people[0].email}\n"
            f"  .venv/bin/trackpipe query {args.project} \"SELECT campaign, count(*) AS "
            "actions FROM actions WHERE campaign IS NOT NULL GROUP BY campaign ORDER BY "
            "actions DESC\"\n"
            f"  {dashboard}  (the dashboard, while `trackpipe up` runs)")


async def send(base: str, traffic: Traffic, rate: float, visitors: int, duration_s: float,
               screen: Console) -> Tally:
    """Journeys of ``visitors`` people at a time, at most ``rate`` requests a second, for
    ``duration_s`` or until Ctrl-C."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tally = Tally()
    deadline = loop.time() + duration_s
    next_slot = loop.time()

    async def slot() -> bool:
        """Wait for this request's turn; False once the time is up."""
        nonlocal next_slot
        at, next_slot = next_slot, max(next_slot, loop.time() - 1) + 1 / rate
        if at >= deadline or stop.is_set():
            return False
        await asyncio.sleep(max(0.0, at - loop.time()))
        return not stop.is_set()

    async def person(http: aiohttp.ClientSession) -> None:
        while True:
            journey = traffic.journey()
            tally.people.append(journey)
            for request in journey.requests:
                if not await slot():
                    return
                await _send(http, base, request, tally)

    async def progress() -> None:
        while not stop.is_set():
            screen.status(tally.line())
            await asyncio.sleep(1)

    reporter = asyncio.create_task(progress())
    try:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(*(person(http) for _ in range(visitors)))
    finally:
        stop.set()
        reporter.cancel()
        loop.remove_signal_handler(signal.SIGINT)
    return tally


async def _send(http: aiohttp.ClientSession, base: str, request: Request, tally: Tally) -> None:
    url = URL(f"{base}{request.path}?{request.query()}", encoded=True)
    async with http.request(request.method, url, headers=request.headers,
                            data=dict(request.form) or None) as answer:
        body = await answer.read()
    if answer.status == 403 and not tally.sent:
        raise Refused(f"the gateway refused the project ({body.decode(errors='replace')}): "
                      "`trackpipe up` registers the demo project; `trackpipe projects add` "
                      "another")
    tally.statuses[str(answer.status)] += 1
    tally.kinds[request.kind] += 1
    if request.js and answer.status < 300 and body.strip() not in EMPTY_SCRIPT:
        tally.js_actions += 1
