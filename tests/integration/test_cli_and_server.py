"""The product as a user runs it: `trackpipe` commands and a real uvicorn gateway process.

Registry changes made with the CLI reach a running gateway within 2 s, bad CLI input is refused
with one clear line and changes nothing, and limits hold over a real HTTP connection.
"""

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from tests.integration.pipeline import (
    cli,
    free_port,
    gateway_ready,
    interrupt,
    wait_status,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def env(settings):
    return {**os.environ, "TRACKPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TRACKPIPE_TOPIC_PREFIX": settings.topic_prefix,
            "TRACKPIPE_DATA_DIR": str(settings.data_dir),
            "TRACKPIPE_HTTP_PORT": str(free_port()), "TRACKPIPE_HEADER_TIMEOUT_MS": "2000",
            "TRACKPIPE_ACK_DEADLINE_MS": str(settings.ack_deadline_ms)}


@pytest.fixture
def server(env):
    """A gateway process, stopped by pid at the end (SIGINT, like Ctrl-C)."""
    process = subprocess.Popen([sys.executable, "-m", "trackpipe.cli", "gateway"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{env['TRACKPIPE_HTTP_PORT']}"
    try:
        def ready() -> bool:
            assert process.poll() is None, process.stdout.read()
            return gateway_ready(url)

        wait_until(ready, 30, "gateway not ready", every_s=0.2)
        yield url, process
    finally:
        interrupt(process, timeout_s=15)
        process.stdout.close()


LIVE_S = 2  # a registry change reaches a running gateway within this (the module's promise)


def test_registry_changes_apply_live_to_a_running_gateway(env, server):
    url, _ = server
    track = f"{url}/track/ce?project=live.example&cookie=c&ip=192.0.2.10"
    assert httpx.get(track).status_code == 403

    assert cli(env, "projects", "add", "live.example", "--alias", "alias.example").returncode == 0
    wait_status(track, 200, LIVE_S)
    wait_status(track.replace("live.example", "ALIAS.example"), 200, LIVE_S)

    assert cli(env, "projects", "set", "live.example", "--exclude-ip", "192.0.2.0/24"
               ).returncode == 0
    wait_status(track, 403, LIVE_S)

    assert cli(env, "projects", "set", "live.example", "--exclude-ip", "198.51.100.1",
               "--secret", "s3cret").returncode == 0
    wait_status(track, 401, LIVE_S)

    assert cli(env, "projects", "remove", "live.example").returncode == 0
    wait_status(track, 403, LIVE_S)


def test_x_forwarded_for_from_an_untrusted_peer_is_not_believed(env, server):
    """No trusted proxies are configured: a loopback sender cannot pick the address that
    exclusions (and the logs) see, whatever the HTTP server's own proxy-header defaults."""
    url, _ = server
    assert cli(env, "projects", "add", "xff.example", "--exclude-ip", "203.0.113.7"
               ).returncode == 0
    track = f"{url}/track/ce?project=xff.example&cookie=c"
    wait_status(track, 200, LIVE_S)
    forged = httpx.get(track, headers={"X-Forwarded-For": "203.0.113.7"})
    assert forged.status_code == 200


def test_stops_cleanly_on_ctrl_c(server):
    url, process = server
    assert httpx.get(url + "/healthz").status_code == 200
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0


def raw_get(url, target):
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


def test_limits_over_real_http(env, server):
    """What the contract says a client sees at each limit, through the real HTTP server."""
    url, _ = server
    assert cli(env, "projects", "add", "limits.example").returncode == 0
    wait_status(f"{url}/track/ce?project=limits.example", 200, LIVE_S)
    # no limit on parameters: 10,000 of them under the URL limit are one request
    many = raw_get(url, "/track/ce?project=limits.example&" + "a=1&" * 10_000)
    assert many.startswith(b"HTTP/1.1 200 "), many[:200]
    # over the URL limit, also past what the HTTP parser itself takes: our 414, our body
    for size in (66_000, 200_000):
        refused = raw_get(url, "/track/ce?project=limits.example&a=" + "b" * size)
        assert refused.startswith(b"HTTP/1.1 414 ") and b"/* 414: the URL is" in refused
    # a 10 MB body: a plain client (it sends everything before it reads) reads the 413
    request = urllib.request.Request(f"{url}/track/ce?project=limits.example&response=json",
                                     data=b"a=" + b"x" * 10_000_000, method="POST")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 413 and b"over" in answer.value.read()
    assert httpx.get(url + "/healthz").status_code == 200


def test_slow_clients_are_cut_off_and_never_stop_the_others(server):
    """Slowloris: many connections that send their headers a byte at a time. Good requests
    are answered meanwhile, and the slow connections are closed once the header timeout (2 s
    here) has passed."""
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    slow = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /track/ce?project=x HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)

    def trickle() -> int:
        """A byte on each slow connection still open, never the end of the headers, and a good
        request answered meanwhile; how many are still open."""
        still_open = [s for s in slow if not closed(s)]
        for s in still_open:
            try:
                s.sendall(b"X")
            except OSError:
                pass
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        return len(still_open)

    try:
        # the attack's own pace, a byte a second, is the polling interval
        wait_until(trickle, 30, lambda left: f"{left} slow connections still open",
                   until=lambda left: left == 0, every_s=1)
    finally:
        for s in slow:
            s.close()


def closed(s: socket.socket) -> bool:
    """True once the server closed the connection without a word (EOF or a reset)."""
    try:
        return s.recv(1024, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False  # open, nothing said
    except OSError:  # reset: closed too
        return True


@pytest.mark.parametrize(("args", "message"), [
    (["projects", "add", "bad/name"], "invalid project name"),
    (["projects", "add", "../../etc"], "invalid project name"),
    (["projects", "add", "ok.example", "--exclude-ip", "300.1.1.1"], "invalid IP"),
    (["projects", "add", "ok.example", "--quota", "-5"], "quota"),
    (["projects", "set", "missing.example", "--quota", "5"], "does not exist"),
    (["projects", "remove", "missing.example"], "does not exist"),
    (["projects", "show", "missing.example"], "does not exist"),
], ids=["slash", "dotdot", "bad-cidr", "negative-quota", "set-missing", "remove-missing",
        "show-missing"])
def test_bad_cli_input_is_refused_and_changes_nothing(env, args, message):
    result = cli(env, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("trackpipe: error:") and message in result.stderr
    assert cli(env, "projects", "list").stdout == ""


def test_add_refuses_duplicates_and_taken_aliases(env):
    assert cli(env, "projects", "add", "a.example", "--alias", "b.example").returncode == 0
    again = cli(env, "projects", "add", "a.example")
    taken = cli(env, "projects", "add", "c.example", "--alias", "b.example")
    assert again.returncode == 2 and "exists already" in again.stderr
    assert taken.returncode == 2 and "already belongs to project 'a.example'" in taken.stderr
    assert cli(env, "projects", "list").stdout == "a.example (aliases: b.example)\n"


def test_apply_is_config_as_code_and_all_or_nothing(env, tmp_path):
    good = tmp_path / "projects.toml"
    good.write_text('[[project]]\nname = "one.example"\naliases = ["uno.example"]\n'
                    'secret = "s"\nexclude_ips = ["10.0.0.0/8"]\nquota = 1000\n\n'
                    '[[project]]\nname = "two.example"\n')
    result = cli(env, "projects", "apply", str(good))
    assert result.returncode == 0, result.stderr
    shown = cli(env, "projects", "show", "one.example").stdout
    assert '"secret": "<set>"' in shown and '"quota": 1000' in shown and "s3" not in shown

    bad = tmp_path / "bad.toml"
    bad.write_text('[[project]]\nname = "three.example"\n\n[[project]]\nname = "four/x"\n')
    result = cli(env, "projects", "apply", str(bad))
    assert result.returncode == 2 and "invalid project name" in result.stderr
    assert cli(env, "projects", "list").stdout == (
        "one.example (aliases: uno.example)\ntwo.example\n")


def children_of(pid):
    """Child pid → command line, from /proc."""
    found = {}
    for task in (Path("/proc") / str(pid) / "task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                found[int(child)] = (Path("/proc") / child / "cmdline").read_bytes()
            except FileNotFoundError:
                pass  # gone meanwhile
    return found


def test_up_runs_the_pipeline_and_starts_a_killed_worker_again(env, tmp_path):
    """The front door: `trackpipe up` on an existing Kafka; an event reaches the day logs; a
    worker killed with SIGKILL is started again and the next event gets through; Ctrl-C stops
    every process it started."""
    from trackpipe.cli.up import DEMO_PROJECT

    env = {**env, "TRACKPIPE_ADMIN_PORT": str(free_port()),
           "TRACKPIPE_WORKER_WEB_PORT": str(free_port()), "TRACKPIPE_RAW_PARTITIONS": "4"}
    url = f"http://127.0.0.1:{env['TRACKPIPE_HTTP_PORT']}"
    with open(tmp_path / "up.log", "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "trackpipe.cli", "up"], env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    started = set()

    def worker():
        pids = [pid for pid, cmd in children_of(up.pid).items() if b"\0worker\0" in cmd]
        started.update(pids)
        return pids[0] if pids else None

    def logged(cookie):
        shown = cli(env, "logs", DEMO_PROJECT)
        return shown.returncode == 0 and cookie in shown.stdout

    def track(cookie):
        answer = httpx.get(f"{url}/track/ce", params={
            "project": DEMO_PROJECT, "event": "pv", "cookie": cookie, "response": "json"})
        assert answer.status_code in (200, 202), answer.text

    try:
        wait_until(lambda: gateway_ready(url), 90, "the gateway was not ready", every_s=0.2)
        # the demo project signs its webhooks (unsigned ones are held, never sent)
        assert '"webhook_secret": "<set>"' in cli(env, "projects", "show", DEMO_PROJECT).stdout
        first = wait_until(worker, 30, "no worker was started", every_s=0.2)
        track("before-kill")
        # (each probe below runs a `trackpipe` command: asked every half second, not more)
        wait_until(lambda: logged("before-kill"), 90, "the first event was not logged",
                   every_s=0.5)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: worker() not in (None, first), 30,
                   "the killed worker was not started again", every_s=0.2)
        track("after-kill")
        wait_until(lambda: logged("after-kill"), 120, "the event after the kill was not logged",
                   every_s=0.5)
        wait_until(lambda: '"event": "pv"' in cli(env, "timeline", DEMO_PROJECT, "--cookie",
                                                    "after-kill", "--json").stdout, 30,
                   "the event after the kill is not in its timeline", every_s=0.5)
        started.update(children_of(up.pid))
    finally:
        interrupt(up, timeout_s=60)
    assert up.returncode == 0, (tmp_path / "up.log").read_text()[-3000:]
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every process `up` started is gone
