"""The gateway's local copy of the registry (gateway.snapshot)."""

import stat
import threading

from gateway import snapshot
from schemas.project import ProjectRecord


def test_processes_saving_at_once_never_break_each_other(tmp_path):
    """`gateway --workers N`: every process saves the same file when the registry changes."""
    path = tmp_path / "registry.snapshot"
    errors = []

    def writer(name):
        try:
            for n in range(200):
                snapshot.save(path, [ProjectRecord.build(f"{name}-{n}.example")])
        except Exception as exc:  # noqa: BLE001 - any is a failure here
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    [record] = snapshot.load(path)
    assert record.name.endswith("-199.example")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds secrets
    assert list(tmp_path.glob("*.tmp")) == []


def test_a_save_the_disk_refuses_is_logged_not_raised(tmp_path, caplog):
    (tmp_path / "registry.snapshot").mkdir()  # cannot be replaced by a file
    snapshot.save(tmp_path / "registry.snapshot", [ProjectRecord.build("a.example")])
    assert "was not saved" in caplog.text
    assert list(tmp_path.glob("*.tmp")) == []
