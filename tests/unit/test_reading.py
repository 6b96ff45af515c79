"""The read commands run in-process over day logs written by the real writer: what needs no
broker (`logs`, and the arguments every read command checks before it asks the registry)."""

import http.server
import json
import threading
import urllib.parse

import pytest

from logstore.layout import day_of
from logstore.lines import LogLine, encode
from processors.daylog import DayLogWriter
from trackpipe.cli import main
from trackpipe.cli.common import day, days

DAY1 = 1_700_000_000_000          # 2023-11-14
HOSTILE = "\x1b]0;PWNED\x07\u202eevil\x9b2J"


def line(offset, index, received_ms, event="pv"):
    record = json.dumps({"id": f"{offset}.{index}", "type": "ce", "event": event,
                         "event_ms": received_ms, "received_ms": received_ms}).encode()
    return LogLine("p", day_of(received_ms), index, encode(record, 0, offset, index),
                   day_of(received_ms))


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """``trackpipe ARGS…`` in-process over ``tmp_path``'s logs: (status, stdout, stderr)."""
    writer = DayLogWriter(tmp_path / "logs")
    writer.write(0, 1, [line(1, 0, DAY1, HOSTILE), line(1, 1, DAY1 + 1, "plain")])
    writer.close()
    monkeypatch.setenv("TRACKPIPE_DATA_DIR", str(tmp_path))

    def cli(*args):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse's refusals
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err

    return cli


def test_logs_print_json_whose_values_cannot_steer_the_terminal(run):
    status, out, err = run("logs", "p", "--date", day_of(DAY1))
    assert status == 0 and err == ""
    first = out.splitlines()[0]
    assert "\x1b" not in first and "\u202e" not in first and "\x9b" not in first
    assert "\\u001b]0;PWNED\\u0007\\u202eevil\\u009b2J" in first
    assert json.loads(first)["event"] == HOSTILE


def test_a_corrupt_day_log_line_is_a_one_line_error(run, tmp_path):
    path = tmp_path / "logs" / "p" / day_of(DAY1) / "part-000.jsonl"
    with open(path, "ab") as f:
        f.write(b"\x00\x00 not a line\n")
    status, out, err = run("logs", "p", "--date", day_of(DAY1))
    assert status == 2 and len(out.splitlines()) == 2  # what came before it is printed
    assert err.startswith(f"trackpipe: error: {path}: the line at byte ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("args", [("logs", "unknown.example"),
                                  ("logs", "unknown.example", "--date", day_of(DAY1)),
                                  ("query", "unknown.example", "SELECT 1")])
def test_a_project_with_no_day_logs_is_a_one_line_error(run, tmp_path, args):
    status, out, err = run(*args)
    assert (status, out) == (2, "")
    assert err == (f"trackpipe: error: unknown.example has no day logs in {tmp_path / 'logs'} "
                   "(is it a project? see `trackpipe projects list`)\n")


@pytest.mark.parametrize("first, last", [("0999-12-31", "1000-01-01"), ("0001-01-01", "0001-01-02"),
                                         ("9999-12-30", "9999-12-31")])
def test_years_before_1000_and_after_9000_are_days_like_any_other(run, first, last):
    status, out, err = run("logs", "p", "--from", first, "--to", last)
    assert (status, out, err) == (0, "", "")
    status, out, err = run("logs", "p", "--from", first, "--to", last, "--by", "event")
    assert (status, out, err) == (0, "", "")


def test_dates_are_written_back_with_four_digits():
    assert day("0999-1-2") == "0999-01-02" and day("0001-01-01") == "0001-01-01"
    assert days("0999-12-31", "1000-01-01") == ["0999-12-31", "1000-01-01"]


@pytest.mark.parametrize("args, says", [
    (("timeline", "p", "--cookie", "c", "--limit", "0"), "'0' is less than 1"),
    (("timeline", "p", "--cookie", "c", "--limit", "ten"), "'ten' is not a whole number"),
    (("timeline", "p", "--cookie", "c", "--limit", "9" * 5000), "is not a whole number"),
    (("query", "p", "SELECT 1", "--max-rows", "-5"), "'-5' is less than 1"),
    (("logs", "p", "--date", "0999-02-30"), "is not a date"),
])
def test_bad_numbers_and_dates_are_refused_by_the_parser(run, args, says):
    status, out, err = run(*args)
    assert status == 2 and out == "" and says in err.splitlines()[-1]
    assert "Traceback" not in err


@pytest.fixture
def worker():
    """A stand-in for a worker's lookups (the seam `trackpipe profile` asks through): an id
    owned by profile ``m0``, merged along a chain ``m0 → m1 → …`` of ``profiles`` entries."""
    profiles: dict[str, dict] = {}

    class Lookups(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            url = urllib.parse.urlsplit(self.path)
            key = urllib.parse.parse_qs(url.query)["key"][0].split("\n")[1]
            table = url.path.rsplit("/", 1)[1]
            answer = {"profile": "m0"} if table == "identity" else profiles.get(key)
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Lookups)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], profiles
    finally:
        server.shutdown()
        server.server_close()


def chain(profiles, length, last_into=None):
    for n in range(length):
        into = f"m{n + 1}" if n + 1 < length else last_into
        profiles[f"m{n}"] = {"id": f"m{n}", "merged_into": into,
                             "properties": {"name": ["\x1b]0;PWNED\x07", 1]}}


def test_profile_follows_a_chain_of_merges_longer_than_32(run, worker):
    port, profiles = worker
    chain(profiles, 40)
    status, out, err = run("profile", "p", "--id", "u1", "--web-port", str(port))
    assert (status, err) == (0, "")
    shown = json.loads(out)
    assert shown["id"] == "m39" and shown["properties"]["name"] == "\x1b]0;PWNED\x07"
    assert "\x1b" not in out


def test_profile_refuses_a_cycle_and_a_chain_past_the_bound_in_one_line(run, worker,
                                                                         monkeypatch):
    port, profiles = worker
    chain(profiles, 3, last_into="m0")
    status, _, err = run("profile", "p", "--id", "u1", "--web-port", str(port))
    assert status == 2 and err == "trackpipe: error: the merges of profile m0 form a cycle\n"
    chain(profiles, 40)
    monkeypatch.setenv("TRACKPIPE_MAX_FAMILY_PROFILES", "10")
    status, _, err = run("profile", "p", "--id", "u1", "--web-port", str(port))
    assert status == 2 and "longer than 10 profiles (TRACKPIPE_MAX_FAMILY_PROFILES)" in err
