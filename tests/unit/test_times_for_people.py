"""One form of a time for people across the read commands and the dashboard: the local time
with its offset, to the millisecond. The dashboard's page writes it in the browser (the
viewer's zone), the commands in Python; both must write the same string for the same instant
in the same zone (headless Chromium runs the page's own function, no broker)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from trackpipe.cli import output

PAGE = Path(__file__).parents[2] / "trackpipe" / "dashboard" / "page.html"
INSTANTS = [1_700_000_000_123, 1_782_000_000_007, 0]  # winter, summer, the epoch


def page_function() -> str:
    """The page's ``when`` as it stands in the page."""
    found = re.search(r"^function when\(ms\) \{\n.*?^\}\n", PAGE.read_text(), re.M | re.S)
    assert found, "the dashboard's page has no function when(ms)"
    return found.group()


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/New_York", "UTC"])
def test_the_dashboard_writes_a_time_as_the_read_commands_do(zone, tmp_path, monkeypatch):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make test` installs Debian's chromium"
    page = tmp_path / "when.html"
    page.write_text(f"<body><script>{page_function()}document.body.textContent = "
                    f"{INSTANTS}.map(when).join('|');</script></body>")
    shown = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        env={**os.environ, "TZ": zone}, capture_output=True, text=True, timeout=90)
    assert shown.returncode == 0, shown.stderr[-2000:]
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        expected = "|".join(output.when(ms) for ms in INSTANTS)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert f"<body>{expected}</body>" in shown.stdout
