"""Hundreds of generated argument lists for the read commands, `logs`, `timeline` and `query`,
run in-process as `trackpipe` runs them, over day logs written by the real writer (hostile
values, a corrupt line, merges that form a cycle, a long chain and a family past its bound)
and the project registry on the real broker. Seeded and bounded in time. Every run ends in
success or in one line of error, never a traceback, and nothing it prints can steer a
terminal."""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import time
import traceback

import pytest

from logstore.layout import day_of
from logstore.lines import Indexed, LogLine, encode
from processors.daylog import DayLogWriter
from schemas.identity import Merge
from schemas.project import ProjectRecord
from tests.conftest import register
from trackpipe.cli import main

pytestmark = pytest.mark.integration

SEED = 20261207
RUNS = 500
BUDGET_S = 150
HOSTILE = ["\x1b]0;PWNED\x07", "\x1b[2J", "a\rb", "x\ny", "\u202eevil", "\x9b1m", "\ud800",
           "é東🙂", "", "null", "anonymous", " ", "\x00", "%1b%5d0", "a" * 3000]
# what nothing printed may hold but the newlines that end its lines
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
                    "\u2066-\u2069\ud800-\udfff]")


def write_logs(root, now_ms: int) -> None:
    """Three projects: ``fuzz.example`` (hostile values, merges: a cycle, a chain of 40, a
    star past the family bound), ``short.example`` (two days of retention, lines of a week
    ago), ``corrupt.example`` (a line that is not one, mid-file)."""
    writer = DayLogWriter(root)
    rng = random.Random(SEED)
    for project, ages_ms in (("fuzz.example", (3_600_000, 60_000)),
                             ("short.example", (7 * 86_400_000, 60_000)),
                             ("corrupt.example", (60_000,))):
        offset = 0
        for age in ages_ms:
            received = now_ms - age
            lines: dict[int, list] = {0: [], 1: []}
            for index in range(40):
                value = rng.choice(HOSTILE)  # in the line as JSON escapes, as old logs hold it
                valid = value.encode("utf-8", "replace").decode()  # what the gateway lets in
                profile = rng.choice(["victim", "pa", "pb", "p00", "p40", valid or "pz"])
                names = [f"cookie:c{index % 5}", f"email:{valid}@x", "id:u1"]
                record = json.dumps({
                    "id": f"{offset}.{index}", "type": rng.choice(["ce", "ce", "identify"]),
                    "event": value, "profile": profile, "visitor_key": f"cookie:c{index % 5}",
                    "visit": f"v{index % 3}", "event_ms": received + rng.randrange(-9, 9) * 1000,
                    "received_ms": received + index, "properties": {value: value, "n": index},
                    "visit_properties": {"campaign": value}}).encode()
                partition = index % 2
                lines[partition].append(LogLine(
                    project, day_of(received), index, encode(record, partition, offset, index),
                    day_of(received), Indexed(profile, received, "ce", names)))
            for partition, written in lines.items():
                writer.write(partition, offset, written)
            offset += 1
    merges = [("pa", "pb"), ("pb", "victim"), ("victim", "pa")]  # a cycle of three
    merges += [(f"p{n:02d}", f"p{n + 1:02d}") for n in range(40)]  # deeper than 32
    merges += [(f"junk{n}", "victim") for n in range(80)]  # past the bound (50)
    for source, into in merges:
        writer.write_merge(Merge(source, into, "email:v@x", "fuzz.example"), 0)
    writer.sync()
    writer.close()
    corrupt = next((root / "corrupt.example").glob("*/part-000.jsonl"))
    lines = corrupt.read_bytes().splitlines(keepends=True)
    corrupt.write_bytes(b"".join(lines[:5] + [b"\x00\xff{not a line\n"] + lines[5:]))


@pytest.fixture
async def read_side(settings, monkeypatch):
    await register(settings, ProjectRecord.build("fuzz.example"),
                   ProjectRecord.build("short.example", retention_days=2),
                   ProjectRecord.build("corrupt.example"))
    write_logs(settings.data_dir / "logs", int(time.time() * 1000))
    for name, value in {"KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                        "TOPIC_PREFIX": settings.topic_prefix,
                        "DATA_DIR": str(settings.data_dir), "QUERY_TIMEOUT_MS": "1500",
                        "QUERY_MAX_MEMORY_BYTES": str(256 * 1024 * 1024),
                        "QUERY_MAX_ROWS": "300", "MAX_FAMILY_PROFILES": "50"}.items():
        monkeypatch.setenv(f"TRACKPIPE_{name}", value)


def _day(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice([time.strftime("%Y-%m-%d"), "2023-11-14", "0999-12-31", "0001-01-01",
                           "9999-12-31", "1000-01-01", "1970-01-01", "2016-02-29"])
    return rng.choice(["2023-02-30", "2023-1-5", "99999-01-01", "-001-01-01", "", "today",
                       "2023-11-14T00:00", "१२३४-01-01", "2023-11-14\x00", "999-01-01"])


def _number(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(["1", "3", "1000", str(2**63), str(2**63 - 1), str(10**30)])
    return rng.choice(["0", "-1", "1e3", "0x10", " 5", "9" * 5000, "", "٣", "1_000"])


SQL = [
    "SELECT event, count(*) FROM actions GROUP BY 1 ORDER BY 2 DESC",
    "SELECT person, count(*) FROM actions GROUP BY 1",
    "SELECT * FROM lines", "SELECT * FROM visits", "SELECT * FROM merges",
    "SELECT * FROM survivors", "SELECT properties, visit_properties FROM actions",
    "PIVOT actions ON event USING count(*)", "SELECT list(event) FROM actions",
    "SELECT {'e': event} AS s, [event] AS l, MAP {event: 1} AS m FROM actions",
    "SELECT count(*) FROM range(1e12::BIGINT)",
    "SELECT list(repeat('x', 1000)) FROM range(1000000)",
    "SELECT range, repeat('y', 100) FROM range(100000)",
    "SELECT CAST(event AS INTEGER) FROM actions", "SELECT 'infinity'::DATE, uuid(), NULL",
    "SELECT * FROM read_csv('/etc/passwd')", "COPY actions TO 'x.csv'", "INSTALL httpfs",
    "SELECT 1; SELECT 2", "", ";", "SELEC", "SELECT chr(27) || ']0;x' || chr(7) AS \"\x1b\"",
    "ATTACH 'x.db'", "SET memory_limit = '100GB'", "SELECT * FROM read_json('../*/*/*')",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT max(n) FROM r",
]


def arguments(rng: random.Random) -> list[str]:
    command = rng.choice(["logs", "timeline", "query"])
    project = rng.choice(["fuzz.example"] * 6 + ["short.example", "corrupt.example",
                         "nope.example", "../etc", "", "A/B", "x" * 300, "\x1b"])
    args = [command, project]
    if command == "query":
        args.append(rng.choice(SQL) if rng.random() < 0.9 else rng.choice(HOSTILE))
    if command == "timeline":  # one person, mostly
        who = rng.sample(["--id", "--email", "--cookie"], 1 if rng.random() < 0.9 else 2)
        for option in who:
            known = {"--id": "u1", "--email": "é東🙂@x", "--cookie": "c3"}[option]
            args += [option, known if rng.random() < 0.7 else rng.choice(HOSTILE)]
    options = {
        "logs": ["--date", "--from", "--to", "--by"],  # not --follow: it never ends
        "timeline": ["--from", "--to", "--limit", "--json"],
        "query": ["--from", "--to", "--format", "--max-rows"],
    }[command]
    for option in rng.sample(options, rng.randrange(0, 3)):
        args.append(option)
        if option in ("--date", "--from", "--to"):
            args.append(_day(rng))
        elif option in ("--limit", "--max-rows"):
            args.append(_number(rng))
        elif option == "--by":
            args.append(rng.choice(["event", "receipt", "nope"]))
        elif option == "--format":
            args.append(rng.choice(["table", "csv", "json", "xml"]))
    if rng.random() < 0.03:
        args.insert(rng.randrange(len(args) + 1), rng.choice(["--nope", "-", "--", "-h"]))
    return args


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(args)
        except SystemExit as exc:  # argparse: --help, or usage and one line of error
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def verdict(status: int, out: str, err: str) -> str | None:
    """What is wrong with a run's ending, or None."""
    if "Traceback" in err:
        return "a traceback"
    if status not in (0, 2):
        return f"exit status {status}"
    for name, text in (("stdout", out), ("stderr", err)):
        if UNSAFE.search(text):
            return f"{name} holds {UNSAFE.search(text).group()!r}"
    lines = err.splitlines()
    errors = [line for line in lines if ": error: " in line]
    if status == 2 and (len(errors) != 1 or lines[-1] != errors[0]
                        or not errors[0].startswith("trackpipe")):
        return f"not one line of error: {err!r}"
    if status == 0 and any(not line.startswith("trackpipe: note: ") for line in lines):
        return f"a success with more than notes on stderr: {err!r}"
    return None


def test_read_commands_answer_any_arguments_with_success_or_one_line_of_error(read_side):
    rng = random.Random(SEED)
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    failures = []
    for n in range(RUNS):  # noqa: B007 - counted
        if time.monotonic() - started > BUDGET_S:
            break
        args = arguments(rng)
        try:
            status, out, err = run(args)
        except Exception:  # noqa: BLE001 - the finding itself
            failures.append((args, traceback.format_exc(limit=-3)))
            continue
        wrong = verdict(status, out, err)
        if wrong:
            failures.append((args, wrong))
        kind = "ok" if status == 0 else (err.splitlines() or ["?"])[-1].split(":")[2][:30]
        outcomes[f"{args[0]} {kind}"] = outcomes.get(f"{args[0]} {kind}", 0) + 1
    assert not failures, "\n".join(f"{a!r}: {w}" for a, w in failures[:10])
    assert n >= 150, f"only {n} runs in {BUDGET_S} s"
    # the generator reaches every command's success and its refusals
    for command in ("logs", "timeline", "query"):
        assert outcomes.get(f"{command} ok"), outcomes
        assert sum(v for k, v in outcomes.items() if k.startswith(command)) > outcomes[
            f"{command} ok"], outcomes
