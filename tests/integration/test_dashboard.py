"""The live dashboard in headless Chromium while traffic flows through a real pipeline; the
screenshot is kept under ``artifacts/`` (and the test's tmp folder)."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from tests.integration.browser import Values, number, render
from tests.integration.pipeline import PROJECT, free_port, started_pipeline, status_of
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap, tmp_path_factory):
    with started_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("dashboard"),
                          workers=("worker-1",)) as p:
        yield p


def test_the_dashboard_shows_live_numbers_while_traffic_flows(pipeline, tmp_path):
    port = free_port()
    worker = f"http://127.0.0.1:{pipeline.web_ports['worker-1']}"
    pipeline.env.update({"TRACKPIPE_ADMIN_PORT": str(port),
                         "TRACKPIPE_METRICS_TARGETS": f"{pipeline.url},{worker}"})
    pipeline.start("dashboard", "dashboard")
    url = f"http://127.0.0.1:{port}/"
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not stop.is_set():
                client.get(pipeline.url + "/track/ce", params={
                    "project": PROJECT, "event": "dash", "cookie": f"d{i % 25}"})
                i += 1

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    def accepted() -> float:
        """The accepted total the dashboard's API shows (0 while it has no numbers yet)."""
        try:
            summary = httpx.get(url + "api/summary").json()["summary"]
        except httpx.TransportError:
            return 0
        return summary["accepted_total"] if summary else 0

    try:
        # the dashboard is up and has scraped twice
        wait_until(accepted, 30, "the dashboard never had numbers", every_s=0.2)
        readings = []
        for _ in range(2):
            if readings:  # the numbers moved on since the first page
                shown = number(readings[0]["accepted-total"])
                wait_until(accepted, 30, f"the accepted total never went past {shown}",
                           until=lambda total, shown=shown: total > shown, every_s=0.2)
            page = render(url, tmp_path, "--dump-dom")
            assert page.returncode == 0, page.stderr[-2000:]
            parsed = Values()
            parsed.feed(page.stdout)
            readings.append(parsed.values)
        shot = tmp_path / "dashboard.png"
        done = render(url, tmp_path, f"--screenshot={shot}", "--window-size=1400,900")
        assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
        (ROOT / "artifacts").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "artifacts" / "dashboard.png")
    finally:
        stop.set()
        sender.join(timeout=15)
    first, second = readings
    for values in readings:
        assert number(values["events-per-s"]) > 0, values
        assert re.fullmatch(r"[\d.,]+ / [\d.,]+ ms", values["ack"]), values["ack"]
        assert "1 gateway(s), 1 worker(s)" in values["processes"]
        assert PROJECT in values["projects"] and "dash" in values["latest"]
    assert number(second["accepted-total"]) > number(first["accepted-total"])  # live


def test_the_dashboard_wants_its_token_beyond_loopback(pipeline):
    refused = pipeline.cli("dashboard", "--host", "0.0.0.0")
    assert refused.returncode == 2 and "TRACKPIPE_ADMIN_TOKEN" in refused.stderr


def test_with_a_token_every_request_must_carry_it(pipeline):
    port = free_port()
    pipeline.env.update({"TRACKPIPE_ADMIN_PORT": str(port), "TRACKPIPE_ADMIN_TOKEN": "t0ken"})
    try:
        pipeline.start("dashboard-token", "dashboard")
    finally:
        del pipeline.env["TRACKPIPE_ADMIN_TOKEN"]
    base = f"http://127.0.0.1:{port}"
    first = wait_until(lambda: status_of(base + "/"), 20, "the dashboard did not start",
                       every_s=0.2)
    assert first == 401
    assert httpx.get(base + "/api/summary?token=wrong").status_code == 401
    assert httpx.get(base + "/?token=t0ken").status_code == 200
    assert httpx.get(base + "/api/summary",
                     headers={"Authorization": "Bearer t0ken"}).status_code == 200
