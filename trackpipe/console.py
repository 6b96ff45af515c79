"""The terminal of ``trackpipe up``: a few lines for a person, then one status line; what the
libraries say goes to a log file.

uvicorn, aiokafka and faust log to stdout and stderr, and so do the children ``up`` starts.
``captured`` points this process's file descriptors 1 and 2 at the log file, so everything
written there, by this process, by a library or by a child that inherits them, lands in the
file; the person's terminal is written through a copy of the original stdout that only
``Console`` holds. Writing to it can never fail a shutdown: when the reader has gone (``make
run | tee log``: Ctrl-C ends ``tee`` at the same moment) the console goes silent instead of
raising, and the stopping goes on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

CLEAR_LINE = "\r\x1b[2K"


class Console:
    """Lines for a person on file descriptor ``fd``; on a terminal (``tty``) also one status
    line, kept below them and rewritten in place."""

    def __init__(self, fd: int, tty: bool) -> None:
        self._fd, self.tty = fd, tty
        self._lock = threading.Lock()
        self._status = ""      # the status line shown now (a terminal only)
        self._progress = ""    # the last progress said on a pipe, not said twice
        self._gone = False     # the reader went away: say nothing more

    def say(self, text: str) -> None:
        """Whole lines, above the status line."""
        with self._lock:
            lines = text if text.endswith("\n") else text + "\n"
            if self.tty and self._status:
                self._write(CLEAR_LINE + lines + self._status)
            else:
                self._write(lines)

    def progress(self, text: str) -> None:
        """What is being waited for: the status line on a terminal; on a pipe, a line each
        time it changes."""
        if self.tty:
            self.status(text)
            return
        with self._lock:
            if text != self._progress:
                self._progress = text
                self._write(text + "\n")

    def status(self, text: str) -> None:
        """The status line (a terminal only: on a pipe it would be a line a second)."""
        if not self.tty:
            return
        with self._lock:
            self._status = text
            self._write(CLEAR_LINE + text)

    def end_status(self) -> None:
        """Leave the status line as it is and go on below it."""
        with self._lock:
            if self._status:
                self._status = ""
                self._write("\n")

    def _write(self, text: str) -> None:
        if self._gone:
            return
        data = text.encode("utf-8", "replace")
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError:  # EPIPE: `| tee` ended first; EIO: the terminal closed
            self._gone = True


@contextlib.contextmanager
def captured(log: Path) -> Iterator[Console]:
    """A ``Console`` on the terminal, while file descriptors 1 and 2 write to ``log`` (the
    previous run's log is kept as ``<log>.1``); both are given back afterwards."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        log.replace(log.with_name(log.name + ".1"))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    saved = os.dup(1), os.dup(2)
    console = Console(saved[0], os.isatty(saved[0]))
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
    finally:
        os.close(target)
    try:
        yield console
    finally:
        console.end_status()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
