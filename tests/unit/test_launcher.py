"""The local Kafka launcher's pure parts."""


def test_cluster_ids_never_start_with_a_dash():
    from trackpipe.kafka.launcher import new_cluster_id

    ids = {new_cluster_id() for _ in range(5000)}  # about 78 would start with '-' otherwise
    assert len(ids) == 5000 and not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids)


def test_a_node_is_recognised_by_pid_and_start_time():
    from trackpipe.kafka.launcher import is_same_process, parse_pid_file

    assert parse_pid_file("4242 987654\n") == (4242, 987654)
    assert parse_pid_file("4242") == (4242, None)  # written by an older version
    assert is_same_process(4242, 987654, 987654)
    assert not is_same_process(4242, 987654, 123)      # the pid was reused
    assert not is_same_process(4242, 987654, None)     # gone, or a zombie
    assert not is_same_process(4242, 0, 987654)        # it died before it could be read
    assert not is_same_process(1, 987654, 987654)      # never init


def test_our_own_process_is_recognised_while_it_execs(tmp_path):
    """The pid file of a process that is exec'ing (as a node does: sh → setsid → java) still
    names it: the start time does not change across exec, where the command line can read
    empty in between. Checked on a real process that execs itself 100 times, polled all the
    while."""
    import subprocess
    import sys
    import time

    from trackpipe.kafka.launcher import LocalKafka, _start_time

    kafka = LocalKafka(tmp_path, port=1)
    kafka.node_dir(0).mkdir(parents=True)
    source = tmp_path / "exec.py"
    source.write_text("import os,sys\nn=int(sys.argv[1])\n"
                      "if n: os.execv(sys.executable,[sys.executable,*sys.argv[:1],str(n-1),"
                      "*sys.argv[2:]])\nsys.stdin.read()\n")
    process = subprocess.Popen([sys.executable, str(source), "100",
                                f"-Dtrackpipe.node={kafka.node_dir(0)}"], stdin=subprocess.PIPE)
    try:
        (kafka.node_dir(0) / "pid").write_text(f"{process.pid} {_start_time(process.pid)}\n")
        polls = 0
        deadline = time.monotonic() + 30
        while polls < 20_000 and time.monotonic() < deadline:
            assert kafka.status() == [(1, process.pid)], f"lost after {polls} polls"
            polls += 1
    finally:
        process.communicate(b"")
    assert kafka.status() == [(1, None)]
