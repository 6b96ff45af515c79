"""The read side through a real broker: HTTP in, then `trackpipe timeline` and `trackpipe
query` as a user runs them, over what the workers logged (SPEC §3, §4, §6)."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.pipeline import PROJECT, gateway_knows, started_pipeline
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap, tmp_path_factory):
    with started_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("read-side"),
                          workers=("worker-1",)) as p:
        yield p


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def timeline(pipeline, *args: str, project: str = PROJECT) -> list[dict]:
    done = pipeline.cli("timeline", project, *args, "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def events_once(pipeline, count: int, *args: str, project: str = PROJECT) -> list[str]:
    """The timeline's event names once it shows ``count`` events: the index is committed with
    the workers' offsets (every 2 s), so it can be that far behind the day logs."""
    def names() -> list[str]:
        done = pipeline.cli("timeline", project, *args, "--json")
        assert done.returncode == 0 or "(yet)" in done.stderr, done.stderr
        return [json.loads(line)["event"] for line in done.stdout.splitlines()]

    return wait_until(names, 20, lambda shown: f"the timeline shows {shown}, not {count}",
                      until=lambda shown: len(shown) >= count, every_s=0.5)  # (a command)


def project_known(pipeline, project: str) -> None:
    """Until the gateway knows a project just added (it follows the registry)."""
    wait_until(lambda: gateway_knows(pipeline.settings, project), 30,
               f"the gateway never knew {project}")


def test_two_devices_merged_by_email_then_id_are_one_timeline_in_event_order(pipeline):
    laptop, phone = unique("l"), unique("p")
    email, user = f"{unique('e')}@example.com", unique("u")
    base = datetime.now(UTC) - timedelta(hours=1)
    at = {name: ms(base + timedelta(minutes=n)) for n, name in enumerate(
        ["phone-first", "laptop-first", "laptop-login", "phone-login", "phone-id",
         "laptop-last"])}

    def send(name: str, cookie: str, **params: str) -> str:
        event_id = pipeline.track(event=name, cookie=cookie, timestamp=at[name],
                                  **params).headers["x-event-id"]
        pipeline.by_id(event_id)
        return event_id

    send("laptop-first", laptop)
    owner = pipeline.by_id(send("laptop-login", laptop, cv_email=email))["profile"]
    pipeline.owns(f"email:{email}", owner)         # the laptop's profile owns the email
    before_merge = pipeline.by_id(send("phone-first", phone))["profile"]
    send("phone-login", phone, cv_email=email)     # the phone's profile is merged into it
    pipeline.topic("merges", lambda found: any(m["source"] == before_merge for m in found))
    pipeline.rebound(phone, owner)                 # the rebind reaches the phone's partition
    send("phone-id", phone, cv_id=user)
    pipeline.owns(f"id:{user}", owner)             # the id's link lands
    send("laptop-last", laptop)
    pipeline.track("/track/ping", cookie=phone)  # a keep-alive: not in a timeline

    expected = sorted(at, key=at.get)
    for who in (["--id", user], ["--email", email.upper()], ["--cookie", phone],
                ["--cookie", laptop]):
        assert events_once(pipeline, len(expected), *who) == expected, who
    events = timeline(pipeline, "--cookie", laptop)
    assert before_merge in {e["profile"] for e in events}  # logged before the merge
    table = pipeline.cli("timeline", PROJECT, "--cookie", phone, "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert [name for name in expected if name in table.stdout] == expected[-2:]
    assert "(2 events)" in table.stdout


def test_a_future_event_shows_once_its_time_has_passed(pipeline):
    # Seen hidden while its time is ahead: a loaded machine that took longer than that to
    # look tries again with more room, instead of failing.
    for room_s in (8, 20, 60):
        cookie = unique("f")
        soon = datetime.now(UTC) + timedelta(seconds=room_s)
        pipeline.by_id(pipeline.track(event="now", cookie=cookie).headers["x-event-id"])
        pipeline.by_id(pipeline.track(event="soon", cookie=cookie,
                                      timestamp=ms(soon)).headers["x-event-id"])  # logged now
        shown = events_once(pipeline, 1, "--cookie", cookie)
        if datetime.now(UTC) < soon:
            break
    else:
        raise AssertionError("too slow to see it hidden, even with a minute")
    assert shown == ["now"]
    # the clock reaching the event's time is what is tested: that time must pass
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.5)
    assert events_once(pipeline, 2, "--cookie", cookie) == ["now", "soon"]


def test_an_event_older_than_retention_is_logged_but_not_shown(pipeline):
    project, cookie = "brief.example", unique("r")
    assert pipeline.cli("projects", "add", project, "--retention-days", "3").returncode == 0
    project_known(pipeline, project)
    old = pipeline.by_id(pipeline.track(project=project, event="old", cookie=cookie,
                                        timestamp=ms(datetime.now(UTC) - timedelta(days=10))
                                        ).headers["x-event-id"], project=project)
    pipeline.by_id(pipeline.track(project=project, event="new", cookie=cookie)
                   .headers["x-event-id"], project=project)
    assert old["event"] == "old"  # accepted and logged...
    assert events_once(pipeline, 1, "--cookie", cookie, project=project) == ["new"]
    pipeline.handled("raw")  # both committed, the index with them: still only the new one
    assert events_once(pipeline, 1, "--cookie", cookie, project=project) == ["new"]


def test_bad_requests_of_the_read_side_are_one_line_errors(pipeline):
    for args, says in ((["timeline", PROJECT, "--cookie", "nobody-at-all"], "no day log"),
                       (["timeline", "unknown.example", "--cookie", "x"], "does not exist"),
                       (["timeline", PROJECT, "--cookie", "anonymous"], "means nobody"),
                       (["query", PROJECT, "SELEC 1"], "syntax error"),
                       (["query", PROJECT, "DELETE FROM actions"], "only SELECT"),
                       (["query", "../etc", "SELECT 1"], "project"),
                       (["profile", PROJECT, "--cookie", "x", "--web-port", "9"],
                        "no worker answered on http://127.0.0.1:9 — is 'trackpipe worker'")):
        done = pipeline.cli(*args)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_what_a_sender_wrote_cannot_steer_the_operators_terminal(pipeline):
    """`event=%1b%5d0%3bPWNED%07` would retitle the operator's window, and a right-to-left
    override would reorder the line, if the read commands printed them raw."""
    cookie = unique("t")
    line = pipeline.by_id(pipeline.track(event="\x1b]0;PWNED\x07", cookie=cookie,
                                         ce_note="\u202eevil\x9b2J").headers["x-event-id"])
    assert events_once(pipeline, 1, "--cookie", cookie) == ["\x1b]0;PWNED\x07"]  # JSON: as sent
    where = f"FROM actions WHERE visitor_key = '{line['visitor_key']}'"
    for args in (["timeline", PROJECT, "--cookie", cookie],
                 ["query", PROJECT, f"SELECT event, properties {where}"],
                 ["query", PROJECT, f"SELECT event, properties->>'note' AS note {where}",
                  "--format", "csv"],
                 ["query", PROJECT, f"SELECT event, properties {where}", "--format", "json"],
                 ["logs", PROJECT]):
        done = pipeline.cli(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", done.stdout), args
        assert re.search(r"\\(x1b|u001b)\]0;PWNED\\(x07|u0007)", done.stdout), args
        assert re.search(r"\\u202eevil\\(x9b|u009b)2J", done.stdout), args


def readme_queries() -> list[str]:
    """The SQL of the `trackpipe query demo.example "…"` examples of the README's read-side
    section (events per day, a funnel, top campaigns)."""
    section = README.read_text().split("## Reading what was collected")[1].split("\n## ")[0]
    return re.findall(r'trackpipe query demo\.example "([^"]+)"', section)


def test_the_readme_queries_answer_right_on_a_known_data_set(pipeline):
    """Three event days; five people view the pricing page, three of them then sign up (one
    signed up before viewing: not a conversion); campaigns from the pages' utm tags."""
    project = "known.example"
    assert pipeline.cli("projects", "add", project).returncode == 0
    project_known(pipeline, project)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=n) for n in (2, 1, 0)]
    sent = []

    def send(event: str, cookie: str, when: datetime, **params: str) -> None:
        sent.append(pipeline.track(project=project, event=event, cookie=cookie,
                                   timestamp=ms(when), **params).headers["x-event-id"])

    campaigns = ["fall", "fall", "spring", None, "fall"]
    for n, campaign in enumerate(campaigns):
        url = "/pricing" + (f"?utm_campaign={campaign}&utm_source=mail" if campaign else "")
        send("pv", f"k{n}", days[n % 3] + timedelta(hours=1), ce_url=url)
    for n in (0, 1):
        send("signup", f"k{n}", days[n % 3] + timedelta(hours=2))
    send("signup", "k2", days[2] - timedelta(hours=1))  # before its pageview
    for event_id in sent:
        pipeline.by_id(event_id, project=project)

    queries = readme_queries()
    assert len(queries) == 3, queries
    answers = []
    for sql in queries:
        done = pipeline.cli("query", project, sql, "--format", "json")
        assert done.returncode == 0, (sql, done.stderr)
        answers.append([json.loads(line) for line in done.stdout.splitlines()])
    per_day, funnel, top = answers
    assert [(row["day"], row["actions"]) for row in per_day] == [
        (days[0].date().isoformat(), 3), (days[1].date().isoformat(), 4),
        (days[2].date().isoformat(), 1)]
    assert funnel == [{"viewed": 5, "then_signed_up": 2}]
    assert [(row["campaign"], row["actions"]) for row in top] == [("fall", 3), ("spring", 1)]
