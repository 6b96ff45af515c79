"""The local Kafka launcher's own promises: it refuses taken ports with a clear error, and
`stop` ends exactly the processes it started."""

import socket

import pytest

from trackpipe.kafka.launcher import LauncherError, LocalKafka, free_port_block

pytestmark = pytest.mark.integration


def test_a_taken_port_is_a_clear_error_and_starts_nothing(tmp_path):
    port = free_port_block()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        kafka = LocalKafka(tmp_path, port=port)
        with pytest.raises(LauncherError, match=f"port {port} is taken"):
            kafka.start()
    assert kafka.status() == [(1, None)]


def squat(attempts: int = 20) -> tuple[int, socket.socket]:
    """A free port block whose node 2 controller port (base + 101) this socket now holds
    (free_port_block checks only node 1's ports: another process may hold base + 101)."""
    for _ in range(attempts):
        port, squatter = free_port_block(), socket.socket()
        try:
            squatter.bind(("127.0.0.1", port + 101))
        except OSError:
            squatter.close()
            continue
        squatter.listen()
        return port, squatter
    raise AssertionError("no port block to squat on")


def test_a_taken_port_of_a_later_node_starts_no_node_at_all(tmp_path):
    port, squatter = squat()
    with squatter:
        kafka = LocalKafka(tmp_path, port=port, nodes=3)
        with pytest.raises(LauncherError, match=r"port \d+ is taken"):  # (ours, or another's)
            kafka.start()
    assert kafka.status() == [(1, None), (2, None), (3, None)]


def test_stop_ignores_a_pid_file_that_names_another_process(tmp_path):
    kafka = LocalKafka(tmp_path, port=free_port_block())
    kafka.node_dir(0).mkdir(parents=True)
    (kafka.node_dir(0) / "pid").write_text("1")  # init: alive, but not our broker
    assert kafka.status() == [(1, None)]
    kafka.stop()  # must not signal pid 1
    assert kafka.status() == [(1, None)]

