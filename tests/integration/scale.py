"""The scaled topology's traffic and its checks, one home for every run of it: the scale test
(processes, tests/integration/test_scale.py) and the compose test (containers,
tests/compose/test_compose.py).

The traffic is simulated people, each sending SDK-like requests in order over many
connections. The checks, after one broker and one worker were killed (-9) mid-traffic: every
request answered 2xx is in the day logs exactly once, no visit is closed twice, and the
profiles and merges are those a single worker makes of the very same raw records, and those
of the input.

Profiles are compared by content, not by id: which of a person's devices ends up owning an
email depends on which link lands first (docs/architecture.md), so ids differ between runs;
the people, their identifiers, properties and action counts must not. Visit counts are left
out: they follow receipt times and the clock, and a request spooled (202) during the broker
outage can arrive after its visit timed out, which starts a new visit in the live run and not
in a replay that reads everything at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from logstore.reading import read_lines
from runtime.settings import Settings
from schemas import envelope
from schemas.profile import shown
from schemas.visit import ENDED
from tests.conftest import records
from tests.integration.pipeline import PROJECT, prepare, start_topology
from tests.waiting import wait_until

LANES = 128
# A request whose connection closed unanswered is sent again, as an SDK does, this many times
# in all: on a loaded machine a resent request's fresh connection can meet the same race.
SEND_ATTEMPTS = 3


def people(total: int, base_ms: int, seed: int = 7) -> list[list[dict[str, str]]]:
    """Each person's requests in order: anonymous pageviews and a ping on each device, a login
    with their email (and, for some, an id) on each, an update and an identify. Event times
    are distinct within a person, so last-write-wins has no ties to break by arrival."""
    rng = random.Random(seed)
    persons: list[list[dict[str, str]]] = []
    count = 0
    while count < total:
        n = len(persons)
        email = f"p{n}@scale.example"
        user_id = f"u{n}" if n % 3 == 0 else None
        steps: list[dict[str, str]] = []
        for d in range(rng.choice((1, 1, 2, 3))):
            cookie = f"s{n}d{d}"
            for page in range(3):
                url = f"/p{page}" + ("?utm_source=news&utm_campaign=fall" if page == 0 else "")
                steps.append({"path": "/track/ce", "event": "pv", "cookie": cookie,
                              "ce_url": url, "idptnc": f"{cookie}-{page}"})
            steps.append({"path": "/track/ping", "cookie": cookie})
            login = {"path": "/track/ce", "event": "login", "cookie": cookie, "cv_email": email,
                     "cv_device": f"d{d}"}
            if user_id:
                login["cv_id"] = user_id
            steps.append(login)
            steps.append({"path": "/track/update", "cookie": cookie, "idptnc": f"{cookie}-2",
                          "duration": "1500"})
        steps.append({"path": "/track/identify", "cookie": f"s{n}d0", "cv_email": email,
                      "cv_plan": rng.choice(("free", "pro"))})
        for i, step in enumerate(steps):
            step["timestamp"] = str(base_ms + n * 100 + i)
        persons.append(steps)
        count += len(steps)
    return persons


async def send_all(persons, urls, on_progress) -> tuple[list[str], Counter]:
    """Every person's requests in order on one of LANES connections, alternating gateways.
    A request whose connection the server closed unanswered (a keep-alive race) is sent again,
    as an SDK would (SEND_ATTEMPTS); ``statuses["resent"]`` counts the resendings."""
    accepted: list[str] = []
    statuses: Counter = Counter()

    async def get(client: httpx.AsyncClient, url: str, params: dict) -> httpx.Response:
        for _ in range(SEND_ATTEMPTS - 1):
            try:
                return await client.get(url, params=params)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                statuses["resent"] += 1
                print(f"resending after {exc!r} at {time.monotonic():.1f}", flush=True)
        return await client.get(url, params=params)

    queue: asyncio.Queue = asyncio.Queue()
    for person in persons:
        queue.put_nowait(person)
    limits = httpx.Limits(max_connections=LANES, max_keepalive_connections=LANES)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def lane(number: int) -> None:
            url = urls[number % len(urls)]
            while not queue.empty():
                for step in queue.get_nowait():
                    params = {k: v for k, v in step.items() if k != "path"}
                    answer = await get(client, url + step["path"], {"project": PROJECT, **params})
                    statuses[answer.status_code] += 1
                    if answer.status_code in (200, 202):
                        accepted.append(answer.headers["x-event-id"])
                    await on_progress(len(accepted))

        await asyncio.gather(*(lane(i) for i in range(LANES)))
    return accepted, statuses


def values(settings: Settings, name: str) -> list[bytes]:
    """The values topic ``name`` holds now, from its start to its end."""
    return [r.value for r in asyncio.run(records(settings, name))]


def visits_with_ends(settings: Settings) -> list[bytes]:
    """The visits topic once it holds a visit ended, for ``check_exactly_once`` to check: a
    visit ends 30 s (the default timeout) after its device's last request, and a run whose
    lanes each send one person's requests the whole time can be in the logs before that."""
    return wait_until(lambda: values(settings, "visits"), 180, "no visit ended",
                      until=ended_visits, every_s=1)


def ended_visits(visits: list[bytes]) -> Counter:
    """How many different ends each visit ended has among the visits topic's ``visits``."""
    records = [json.loads(v) for v in set(visits)]
    return Counter(r["visit"] for r in records if r["type"] == ENDED)


async def copy_raw(source: Settings, target: Settings) -> int:
    """The raw envelopes of one run into another run's raw topic, partition for partition;
    how many records they hold."""
    messages = await records(source, "raw")
    producer = AIOKafkaProducer(bootstrap_servers=target.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for m in messages:
            await producer.send(target.topic("raw"), m.value, key=m.key, partition=m.partition)
        await producer.flush()
    finally:
        await producer.stop()
    return sum(len(envelope.unpack(m.value)) for m in messages)


def people_of(settings: Settings) -> tuple[Counter, Counter, int]:
    """(the surviving profiles by content, how many profiles were merged into each, how
    many merged profiles do not show yet where they went)."""
    latest = {}
    for value in values(settings, "profiles"):
        profile = json.loads(value)
        latest[profile["profile"]] = profile

    def content(p):
        return (tuple(sorted(p["ids"])), tuple(sorted(p["emails"])), tuple(sorted(p["cookies"])),
                p["actions"], tuple(sorted(shown(p)["properties"].items())))

    survivors = {p["profile"]: p for p in latest.values() if not p["merged_into"]}
    final = {}
    for p in latest.values():
        seen, current = set(), p
        while current["merged_into"] and current["profile"] not in seen:
            seen.add(current["profile"])
            current = latest.get(current["merged_into"], current)
        final[p["profile"]] = current["profile"]
    sources = {json.loads(v)["source"] for v in values(settings, "merges")}
    merged_into = Counter(content(survivors[final[s]]) for s in sources
                          if final.get(s) in survivors)
    unresolved = sum(1 for s in sources if final.get(s) not in survivors or final[s] == s)
    return Counter(content(p) for p in survivors.values()), merged_into, unresolved


def settled(settings: Settings, persons: list[list[dict[str, str]]], name: str) -> tuple:
    """``people_of`` once the profiles are those of the input, each person once, and every
    merge decided shows in the profiles published (they are published at commits)."""
    want = Counter(expected_person(p) for p in persons)
    return wait_until(lambda: people_of(settings), 120,
                      lambda got: f"{name}: {difference('profiles', got[0], want)}; "
                                  f"{got[2]} merges not shown",
                      until=lambda got: got[0] == want and got[2] == 0, every_s=0.5)


def difference(name: str, mine: Counter, theirs: Counter) -> str:
    """What differs between two Counters of profile contents, with one person's example."""
    only_mine, only_theirs = mine - theirs, theirs - mine
    if not only_mine and not only_theirs:
        return f"{name} agree"
    email = next(iter(only_mine or only_theirs))[1]
    return (f"{name} differ for {len(only_mine)}/{len(only_theirs)} entries; {email}: "
            f"{[k for k in mine if k[1] == email]} against "
            f"{[k for k in theirs if k[1] == email]}")


def logged(settings: Settings, days: list[str]) -> Counter:
    root = settings.data_dir / "logs"
    return Counter(r["id"] for r in read_lines(root, PROJECT, days, None))




def expected_person(steps: list[dict[str, str]]) -> tuple:
    """What a person's profile must say, from their requests alone (as ``people_of``'s
    content)."""
    properties: dict[str, tuple[str, str]] = {}
    for step in steps:
        for name, value in step.items():
            if name.startswith("cv_"):
                at = step["timestamp"]
                if name[3:] not in properties or at >= properties[name[3:]][1]:
                    properties[name[3:]] = (value, at)
    return (tuple(sorted({s["cv_id"] for s in steps if "cv_id" in s})),
            tuple(sorted({s["cv_email"] for s in steps if "cv_email" in s})),
            tuple(sorted({s["cookie"] for s in steps})),
            sum(1 for s in steps if s["path"] == "/track/ce"),
            tuple(sorted((k, v) for k, (v, _) in properties.items())))


def check_exactly_once(accepted: list[str], statuses: Counter, counts: Counter,
                       visits: list[bytes]) -> None:
    """Every request answered 2xx (``accepted``: their event ids) is logged (``counts``: the
    day logs' ids) exactly once, and no visit is closed twice (``visits``: the visits topic)."""
    assert set(statuses) <= {200, 202, "resent"}, statuses
    assert set(accepted) <= set(counts), \
        f"{len(set(accepted) - set(counts))} accepted requests are not in the day logs"
    # a resent request may have been accepted the first time too, under another event id
    assert len(set(counts) - set(accepted)) <= statuses["resent"]
    repeated = {i: n for i, n in counts.items() if n > 1}
    assert not repeated, f"{len(repeated)} events logged more than once"
    # A worker killed after a record's day-log line sends its outputs again, byte for byte
    # (its journal entry applied again): one close delivered twice. Closed twice means
    # two different ends.
    ended = ended_visits(visits)
    assert ended and max(ended.values()) == 1, ended.most_common(3)


def check_against_one_worker(run: Settings, persons: list[list[dict[str, str]]],
                             days: list[str], tmp: Path, env: dict[str, str]) -> tuple:
    """The run's profiles and merges are those of the input, and those one worker alone makes
    of the run's raw records, copied to a prefix of their own on the same cluster and
    processed by a worker started here (``env``: its variables); the run's workers must have
    published what they hold. Returns the run's (people, merged into) Counters."""
    got = settled(run, persons, "the run")
    total = sum(map(len, persons))
    alone = dataclasses.replace(run, topic_prefix=f"a{uuid.uuid4().hex[:8]}.",
                                data_dir=tmp / "alone")
    prepare(alone)
    copied = asyncio.run(copy_raw(run, alone))
    assert copied >= total
    (tmp / "alone-run").mkdir()
    q = start_topology(alone, tmp / "alone-run", ("worker-1",), gateways=0, env=env)
    try:
        wait_until(lambda: sum(logged(alone, days).values()), 420,
                   "the single worker did not log every record",
                   until=lambda logged_now: logged_now >= total, every_s=0.5)
        expected = settled(alone, persons, "the single worker")
    finally:
        q.stop_all()
    for name, mine, theirs in (("profiles", got[0], expected[0]),
                               ("merged into", got[1], expected[1])):
        assert mine == theirs, "run against single worker: " + difference(name, mine, theirs)
    assert sum(got[0].values()) == len(persons)
    assert set(got[0]) == {expected_person(p) for p in persons}
    return got[0], got[1]
