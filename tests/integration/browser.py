"""Pages in headless Chromium, as a person's browser shows them: the DOM after the page's
scripts ran (``--dump-dom``) and the text of every element with an id."""

from __future__ import annotations

import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: `make test` installs Debian's chromium (make system-deps)"
    return found


class Values(HTMLParser):
    """The text of every element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._open.append(dict(attrs).get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in reversed(self._open):
            if element:
                self.values[element] = self.values.get(element, "") + data
                return


def render(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp / f"chromium-{time.monotonic_ns()}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--virtual-time-budget=4000", *extra, url],
                          capture_output=True, text=True, timeout=90)


def number(text: str) -> float:
    return float(text.replace(",", "").split()[0])
