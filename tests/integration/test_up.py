"""`trackpipe up` as `make run | tee log` runs it, with its own local Kafka: the terminal gets
trackpipe's lines only (the libraries' go to the log file it names), the ready line comes once
every role answers, and a Ctrl-C to the process group (what a terminal sends: `tee` ends at the
same moment, so `up` writes into a closed pipe) stops every process it started, Kafka too."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.pipeline import free_port, status_of
from tests.waiting import wait_until
from trackpipe.kafka.launcher import LocalKafka, free_port_block, parse_pid_file

pytestmark = pytest.mark.integration

READY = "trackpipe is up"
OURS = ("trackpipe", "creating the topics", "starting", "try:", "then:", "  ",
        "the libraries' logs")


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, now."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie has ended: only its reaping is left, and a
    detached broker's parent is init, which reaps when it will)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def group_members(bootstrap: str, group: str) -> int:
    """How many members the consumer group has while it is stable (0 otherwise)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    return sum(len(members) for response in described
               for _, _, state, _, _, members in response.groups if state == "Stable")


def test_up_under_a_pipe_is_quiet_ready_when_ready_and_stops_everything_on_ctrl_c(tmp_path):
    data, kafka_port = tmp_path / "data", free_port_block()
    ports = {name: free_port() for name in ("HTTP", "ADMIN", "WORKER_WEB", "TRIGGERS_WEB")}
    env = {k: v for k, v in os.environ.items() if k != "TRACKPIPE_KAFKA_BOOTSTRAP"}
    env.update({f"TRACKPIPE_{name}_PORT": str(port) for name, port in ports.items()})
    env.update({"TRACKPIPE_DATA_DIR": str(data), "TRACKPIPE_LOCAL_KAFKA_PORT": str(kafka_port),
                "TRACKPIPE_RAW_PARTITIONS": "4", "TRACKPIPE_TOPIC_PREFIX": "trackpipe."})
    shown = tmp_path / "tee.log"
    # `trackpipe up 2>&1 | tee tee.log` in a process group of its own, as a shell would
    up = subprocess.Popen([sys.executable, "-m", "trackpipe.cli", "up"], env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, process_group=0)
    tee = None
    started: set[int] = set()
    kafka_pid = None
    try:
        # Ctrl-C kills tee as a terminal's shell starts it, even where the suite itself runs
        # with SIGINT ignored (a background job of a script), which tee would inherit
        tee = subprocess.Popen(["tee", str(shown)], stdin=up.stdout,
                               stdout=subprocess.DEVNULL, process_group=up.pid,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        up.stdout.close()

        def text() -> str:
            return shown.read_text() if shown.exists() else ""

        def ready() -> bool:
            assert up.poll() is None, text()
            started.update(children_of(up.pid))  # to stop them by pid should this fail
            return READY in text()

        wait_until(ready, 300, lambda _: f"no ready line: {text()}", every_s=0.1)
        # the moment the line is there, every role answers
        assert status_of(f"http://127.0.0.1:{ports['HTTP']}/readyz") == 200
        assert status_of(f"http://127.0.0.1:{ports['WORKER_WEB']}/metrics") == 200
        assert status_of(f"http://127.0.0.1:{ports['ADMIN']}/api/summary") == 200
        bootstrap = f"127.0.0.1:{kafka_port}"
        assert asyncio.run(group_members(bootstrap, "trackpipe.triggers")) >= 1

        kafka_pid, _ = parse_pid_file((data / "kafka" / "node-1" / "pid").read_text())
        assert len(children_of(up.pid)) == 3 and alive(kafka_pid)
        started.update(children_of(up.pid))

        lines = shown.read_text().splitlines()
        assert all(line.startswith(OURS) for line in lines), lines
        assert not re.search(r"INFO|WARNING|ERROR|Traceback|\x1b", shown.read_text()), lines
        log = Path(re.search(r"what the libraries log goes to (\S+)", lines[0]).group(1))
        assert log == data / "trackpipe-up.log"
        assert "Uvicorn running on" in log.read_text()  # the noise is there, not on screen

        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C: `up` and `tee` at once
        assert up.wait(timeout=180) == 0
        assert tee.wait(timeout=10) != 0  # it was interrupted: `up` went on without a reader
        assert not [pid for pid in started if alive(pid)]
        assert not alive(kafka_pid)
        assert LocalKafka(data / "kafka", kafka_port).status() == [(1, None)]
    finally:
        if up.poll() is None:  # Ctrl-C first: `up` stops what it started
            os.kill(up.pid, signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for process in (up, tee):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        for pid in started | ({kafka_pid} if kafka_pid else set()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        LocalKafka(data / "kafka", kafka_port).stop()
