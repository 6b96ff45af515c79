"""`trackpipe up`'s children: one that exits is started again, with a growing pause while it
keeps failing, and stop() ends them all (real short-lived processes, no broker)."""

import os
import sys

from tests.waiting import wait_until
from trackpipe.children import Children

EXITS = [sys.executable, "-c", "import sys; sys.exit(70)"]
RUNS = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_child_that_exits_is_started_again_and_the_others_are_left_alone():
    children = Children({"worker": EXITS, "dashboard": RUNS}, {}, first_pause_s=0.1,
                        max_pause_s=0.4)
    children.start()
    try:
        first = children.pids()
        wait_until(lambda: len(children.starts["worker"]) >= 3, 20, "not started 3 times",
                   every_s=0.05)
        assert children.pids()["worker"] != first["worker"]
        assert children.pids()["dashboard"] == first["dashboard"]
        assert len(children.starts["dashboard"]) == 1
    finally:
        children.stop(timeout_s=5)


def test_the_pause_doubles_while_a_child_keeps_failing_up_to_its_maximum():
    children = Children({"worker": EXITS}, {}, first_pause_s=0.1, max_pause_s=0.4)
    children.start()
    try:
        wait_until(lambda: len(children.starts["worker"]) >= 5, 20, "not started 5 times",
                   every_s=0.05)
    finally:
        children.stop(timeout_s=5)
    starts = children.starts["worker"][:5]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert all(gap >= pause for gap, pause in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True)), gaps


def test_stop_ends_every_child_and_starts_none_again():
    children = Children({"worker": RUNS, "dashboard": RUNS}, {})
    children.start()
    processes = dict(children._processes)
    children.stop(timeout_s=5)
    assert all(p.poll() is not None for p in processes.values())
    assert children._processes == processes
    assert {name: len(starts) for name, starts in children.starts.items()} == {
        "worker": 1, "dashboard": 1}


def test_each_child_has_a_session_of_its_own_so_a_ctrl_c_reaches_up_alone():
    said = []
    children = Children({"worker": EXITS, "dashboard": RUNS}, {}, first_pause_s=0.1,
                        max_pause_s=0.4, report=said.append)
    children.start()
    try:
        pid = children.pids()["dashboard"]
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid != os.getpgid(0)
        wait_until(lambda: said, 20, "the restart was not reported", every_s=0.05)
    finally:
        children.stop(timeout_s=5)
    assert said[0] == "trackpipe up: the worker exited with 70; starting it again"
