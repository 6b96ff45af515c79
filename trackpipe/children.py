"""The processes ``trackpipe up`` runs beside its gateway, started again when one exits.

A worker stops itself on purpose when Kafka gives up on one of its messages (exit 70, see
``processors.outbound``), and any of them can crash; in the compose deployment the container
restarts, and here this does the same: the process is started again after a pause that
doubles (1 s up to 30 s) while it keeps exiting within a minute of its start.

Each child runs in a session of its own, out of the terminal's process group: a Ctrl-C reaches
``up`` alone, which stops the gateway, then the children (``stop``), then Kafka, in that order;
a child that got the Ctrl-C too would exit at once and be started again by the watcher.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

STABLE_S = 60.0  # a process that ran this long starts again after the shortest pause


class Children:
    def __init__(self, commands: Mapping[str, Sequence[str]], env: Mapping[str, str],
                 first_pause_s: float = 1.0, max_pause_s: float = 30.0,
                 report: Callable[[str], None] | None = None) -> None:
        self._commands = dict(commands)
        self._report = report or (lambda text: print(text, file=sys.stderr, flush=True))
        self._env = dict(env)
        self._first_pause_s, self._max_pause_s = first_pause_s, max_pause_s
        self._processes: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, list[float]] = {name: [] for name in self._commands}
        self._pause: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="children", daemon=True)

    def start(self) -> None:
        with self._lock:
            for name in self._commands:
                self._start(name)
        self._watcher.start()

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {name: process.pid for name, process in self._processes.items()}

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM to each, SIGKILL to what is still running after ``timeout_s``."""
        with self._lock:
            self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join()
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self._processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _start(self, name: str) -> None:
        self._processes[name] = subprocess.Popen(self._commands[name], env=self._env,
                                                 stdin=subprocess.DEVNULL,
                                                 start_new_session=True)
        self.starts[name].append(time.monotonic())
        log.info("started the %s: pid %d", name, self._processes[name].pid)

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            for name, process in list(self._processes.items()):
                code = process.poll()
                if code is None:
                    continue
                ran_s = time.monotonic() - self.starts[name][-1]
                pause = self._pause.get(name, self._first_pause_s)
                if ran_s >= STABLE_S:  # it had been running fine: no reason to wait long
                    pause = self._first_pause_s
                if ran_s < pause:
                    continue  # not yet: it exited soon after its last start
                self._report(f"trackpipe up: the {name} exited with {code}; starting it again")
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._start(name)
                self._pause[name] = min(pause * 2, self._max_pause_s)
