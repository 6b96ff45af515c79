"""A real Apache Kafka (KRaft, combined broker+controller) on this machine, from Maven jars.

There is no Docker engine on our machines and mocks are not Kafka, so the project brings up the
real broker itself: ``pom.xml`` beside this file lists the jars; the first start resolves them
with Maven into the user cache folder, later starts reuse them. Each node gets a folder under
``<data_dir>/kafka/node-<n>`` with its config, log, data and pid file; ``stop`` ends exactly the
processes whose pid files it finds, after checking that each pid is still our java process.
Ports are on 127.0.0.1 only: broker ``port + i``, controller ``port + 100 + i``.

A node is recognised by its pid *and* that process's start time (``/proc/PID/stat``), both
written to its pid file when it is launched: the start time survives the launch's ``exec``s
(``sh`` → ``setsid`` → ``java``) and tells a reused pid apart. Reading ``/proc/PID/cmdline``
instead, as an earlier version did, can read it empty while the process is between two
``exec``s, which reported a node that was starting fine as "exited during start".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from runtime.settings import local_bootstrap

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).with_name("pom.xml")


JVM_INIT_FAILURE = "Error occurred during initialization of VM"


class LauncherError(RuntimeError):
    """The local Kafka cannot be started or stopped; the message says what to do."""


def jar_dir() -> Path:
    """The cached jars, resolved from Maven Central on first use."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trackpipe"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    target = cache / f"kafka-{KAFKA_VERSION}-{digest}"
    if (target / ".complete").exists():
        return target
    for tool, package in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")):
        if shutil.which(tool) is None:
            raise LauncherError(f"`{tool}` is not installed: install Java 17 and Maven "
                                f"(Debian: apt-get install {package} maven)")
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"resolving Kafka {KAFKA_VERSION} jars with Maven (first run only)...", file=sys.stderr)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={partial}", "-DincludeScope=runtime"],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise LauncherError("maven could not resolve the Kafka jars:\n"
                            + (result.stdout + result.stderr)[-2000:])
    (partial / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def new_cluster_id() -> str:
    """A KRaft cluster id like Kafka's own ``Uuid.randomUuid``: URL-safe base64 of 16 random
    bytes, never starting with '-' (a command line would read it as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class LocalKafka:
    folder: Path
    port: int = 19092
    nodes: int = 1
    heap: str = "512m"

    @property
    def bootstrap(self) -> str:
        return local_bootstrap(self.port, self.nodes)

    def node_dir(self, i: int) -> Path:
        return self.folder / f"node-{i + 1}"

    # -- start ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = 90) -> str:
        """Start every node that is not running and wait until the cluster answers."""
        jars = jar_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        cluster_file = self.folder / "cluster-id"
        if not cluster_file.exists():
            cluster_file.write_text(new_cluster_id())
        cluster_id = cluster_file.read_text().strip()
        missing = [i for i in range(self.nodes) if self._pid(i) is None]
        for i in missing:  # every port first: never leave some nodes running on a refusal
            self._check_ports_free(i)
        try:
            for i in missing:
                self._start_node(i, jars, cluster_id)
            try:
                self.wait_ready(timeout_s)
            except LauncherError:
                # A JVM that failed before Kafka ran (seen once on a loaded machine: "Error
                # occurred during initialization of VM") is worth one more try; Kafka's own
                # failures are not.
                stillborn = [i for i in missing
                             if self._pid(i) is None and JVM_INIT_FAILURE in self._tail(i)]
                if not stillborn:
                    raise
                for i in stillborn:
                    self._start_node(i, jars, cluster_id)
                self.wait_ready(timeout_s)
        except BaseException:
            self.stop(nodes=[i + 1 for i in missing])  # what this call started, and only that
            raise
        return self.bootstrap

    def _check_ports_free(self, i: int) -> None:
        for port in (self.port + i, self.port + 100 + i):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    raise LauncherError(
                        f"port {port} is taken by another process: stop it, or choose other "
                        "ports with TRACKPIPE_LOCAL_KAFKA_PORT") from None

    def _start_node(self, i: int, jars: Path, cluster_id: str) -> None:
        node = self.node_dir(i)
        data = node / "data"
        node.mkdir(parents=True, exist_ok=True)
        config = node / "server.properties"
        config.write_text(self._server_properties(i, data))
        log4j = node / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=INFO, file\n"
            "log4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={node / 'server.log'}\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n")
        java = ["java", "-cp", f"{jars}/*", f"-Dlog4j.configuration=file:{log4j}"]
        if not (data / "meta.properties").exists():
            result = subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(config), "--ignore-formatted"], capture_output=True, text=True)
            if result.returncode != 0:
                raise LauncherError(f"formatting node {i + 1} failed: {result.stderr[-1000:]}")
        # Detached through sh so the broker outlives a `trackpipe kafka start` and is never left
        # as our zombie; arguments travel as "$@", never through the shell's parser.
        command = ["setsid", *java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
                   f"-Dtrackpipe.node={node}", "kafka.Kafka", str(config)]
        spawned = subprocess.run(
            ["sh", "-c", 'exec "$@" >>"$TRACKPIPE_KAFKA_LOG" 2>&1 </dev/null & echo $!', "sh",
             *command],
            env={**os.environ, "TRACKPIPE_KAFKA_LOG": str(node / "stdout.log")},
            capture_output=True, text=True, check=True)
        pid = int(spawned.stdout.strip())
        (node / "pid").write_text(f"{pid} {_start_time(pid) or 0}\n")

    def _server_properties(self, i: int, data: Path) -> str:
        voters = ",".join(f"{n + 1}@127.0.0.1:{self.port + 100 + n}" for n in range(self.nodes))
        replicas = min(self.nodes, 3)
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={i + 1}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port + i},"
            f"CONTROLLER://127.0.0.1:{self.port + 100 + i}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port + i}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            f"offsets.topic.replication.factor={replicas}",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={max(1, replicas - 1)}",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={2 if replicas >= 3 else 1}",
            "offsets.topic.num.partitions=12",
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            # a killed node is fenced (leaders move, ISRs shrink) in seconds, not nine
            "broker.session.timeout.ms=4000",
            "broker.heartbeat.interval.ms=1000",
            "num.network.threads=2",
            "num.io.threads=4",
            "log.segment.bytes=67108864",
            "",
        ])

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            for i in range(self.nodes):
                if self._pid(i) is None:
                    raise LauncherError(f"kafka node {i + 1} exited during start; its logs "
                                        f"are in {self.node_dir(i)}:\n{self._tail(i)}")
            try:
                brokers = asyncio.run(_broker_count(self.bootstrap))
                if brokers >= self.nodes:
                    return
                last_error = f"{brokers} of {self.nodes} brokers up"
            except Exception as exc:  # not up yet: any client error means "try again"
                last_error = str(exc)
            time.sleep(0.5)
        raise LauncherError(f"kafka did not answer within {timeout_s:.0f} s ({last_error})")

    def _tail(self, i: int, lines: int = 20) -> str:
        """The last lines of the node's console and server logs, to quote in an error."""
        quoted = []
        for name in ("stdout.log", "server.log"):
            log = self.node_dir(i) / name
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                quoted.append(f"--- {name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(quoted) or "(the node wrote no log)"

    # -- status and stop -----------------------------------------------------------------------

    def _pid(self, i: int) -> int | None:
        """The node's pid if its process is alive and still the one we launched, else None."""
        try:
            pid, started = parse_pid_file((self.node_dir(i) / "pid").read_text())
        except (OSError, ValueError):
            return None
        if started is None:  # a pid file of an older version: recognise the command line
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return None
            return pid if f"-Dtrackpipe.node={self.node_dir(i)}".encode() in cmdline else None
        return pid if is_same_process(pid, started, _start_time(pid)) else None

    def status(self) -> list[tuple[int, int | None]]:
        return [(i + 1, self._pid(i)) for i in range(self.nodes)]

    def stop(self, timeout_s: float = 30, nodes: list[int] | None = None,
             sig: int = signal.SIGTERM) -> None:
        """Stop the given nodes (1-based; default all) and wait until they are gone."""
        targets = [n - 1 for n in nodes] if nodes else list(range(self.nodes))
        pids = [(i, pid) for i in targets if (pid := self._pid(i)) is not None]
        for _, pid in pids:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        for i, pid in pids:
            while self._pid(i) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._pid(i) is not None:
                os.kill(pid, signal.SIGKILL)
                while self._pid(i) is not None:
                    time.sleep(0.1)
            (self.node_dir(i) / "pid").unlink(missing_ok=True)


def parse_pid_file(text: str) -> tuple[int, int | None]:
    """(pid, start time) from a pid file; the start time is None in a file of an older
    version, which wrote the pid alone."""
    fields = text.split()
    if not 1 <= len(fields) <= 2:
        raise ValueError(f"not a pid file: {text!r}")
    return int(fields[0]), int(fields[1]) if len(fields) == 2 else None


def is_same_process(pid: int, recorded: int, current: int | None) -> bool:
    """Whether ``pid`` still runs the process launched with start time ``recorded``
    (``current``: its start time now, None when it is gone or a zombie; ``recorded`` 0:
    the process was gone before its start time could be read)."""
    return pid > 1 and current is not None and recorded != 0 and recorded == current


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the name in (...) may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def free_port_block(size: int = 101) -> int:
    """A base port p such that p and p+100 (a node's broker and controller) are free:
    for tests and benchmarks that run a broker of their own beside any other."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + size > 65000:
            continue
        try:
            for port in (base, base + 100):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port pair found")


async def _broker_count(bootstrap: str) -> int:
    from aiokafka import AIOKafkaClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refusals are expected here
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
        return len(client.cluster.brokers())
    finally:
        await client.close()
