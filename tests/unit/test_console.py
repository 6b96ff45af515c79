"""`trackpipe up`'s terminal: lines for people, one status line on a terminal only, silence
instead of an error once the reader is gone, and everything else written to file descriptors
1 and 2 (by the process, a library or a child) in the log file (real pipes and processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from trackpipe.console import CLEAR_LINE, Console


@pytest.fixture
def pipe():
    """A Console writing into a pipe, and a function returning what reached the other end."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)

    def received() -> str:
        try:
            return os.read(read_end, 65536).decode()
        except BlockingIOError:
            return ""

    yield write_end, received
    for fd in (read_end, write_end):
        try:
            os.close(fd)
        except OSError:
            pass


def test_on_a_pipe_progress_is_a_line_when_it_changes_and_no_status_line_is_kept(pipe):
    fd, received = pipe
    screen = Console(fd, tty=False)
    screen.say("starting")
    screen.progress("waiting for the worker…")
    screen.progress("waiting for the worker…")
    screen.status("12.0 events/s")  # a line a second would flood `| tee log`
    screen.progress("waiting for nothing")
    assert received() == "starting\nwaiting for the worker…\nwaiting for nothing\n"


def test_on_a_terminal_lines_go_above_the_one_status_line(pipe):
    fd, received = pipe
    screen = Console(fd, tty=True)
    screen.progress("waiting…")
    screen.status("1 events/s")
    screen.say("the worker exited")
    screen.end_status()
    screen.say("stopped")
    assert received() == (f"{CLEAR_LINE}waiting…{CLEAR_LINE}1 events/s"
                          f"{CLEAR_LINE}the worker exited\n1 events/s\nstopped\n")


def test_a_reader_that_went_away_makes_the_console_silent_not_an_error():
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| tee` ended by the same Ctrl-C
    screen = Console(write_end, tty=False)
    try:
        screen.say("stopping")  # EPIPE: Python ignores SIGPIPE, so this would raise
        screen.say("stopped")
    finally:
        os.close(write_end)


def test_captured_sends_what_libraries_and_children_write_to_the_log(tmp_path):
    log = tmp_path / "up.log"
    log.write_text("the previous run\n")
    script = textwrap.dedent(f"""
        import logging, os, subprocess, sys
        from pathlib import Path
        from trackpipe.console import captured
        with captured(Path({str(log)!r})) as screen:
            print("a library's print")
            logging.warning("a library's warning")
            os.write(2, b"straight to fd 2\\n")
            subprocess.run([sys.executable, "-c", "print('a child')"])
            screen.say("for people")
        print("after: the terminal again")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "for people\nafter: the terminal again\n", "")
    kept = log.read_text()
    for said in ("a library's print", "a library's warning", "straight to fd 2", "a child"):
        assert said in kept
    assert (tmp_path / "up.log.1").read_text() == "the previous run\n"
