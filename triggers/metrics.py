"""The triggers service's counters on ``/metrics`` (Prometheus text), served on
``TRACKPIPE_TRIGGERS_WEB_PORT``: what it delivered, what failed and was retried, what it gave
up (dead letters), and every ingestion warning it noticed, by project and kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from aiohttp import web

from runtime.prometheus import family
from runtime.warning_budget import WarningBudget

# the service's counts (``TriggerService.counts``) → family, help
COUNTS = {
    "delivered": ("webhooks_delivered_total", "Webhooks a receiver answered 2xx."),
    "failed attempts": ("webhook_failures_total",
                        "Webhook attempts that failed (a network error, a timeout, a non-2xx "
                        "answer, an address refused), retried or not."),
    "dead": ("dead_letters_total", "Firings and unreadable actions sent to the dead-letter "
             "topic."),
    "queued js": ("js_queued_total", "JS actions queued for a visitor's next request."),
    "held unsigned": ("held_unsigned_total",
                      "Webhook deliveries held for want of a signing secret."),
    "deferred": ("deferred_total", "Firings left pending for want of room in flight."),
    "too large": ("too_large_total", "Records Kafka would never take, not written."),
}


class TriggersMetrics:
    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = counts
        self.failures: Counter[str] = Counter()  # project → webhook attempts that failed
        self.warnings = WarningBudget()

    def render(self) -> str:
        lines: list[str] = []
        for count, (name, text) in COUNTS.items():
            lines += family(f"trackpipe_triggers_{name}", "counter", text,
                            [({}, self.counts.get(count, 0))])
        lines += family("trackpipe_triggers_project_webhook_failures_total", "counter",
                        "Webhook attempts that failed, by project.",
                        (({"project": p}, n) for p, n in sorted(self.failures.items())))
        lines += self.warnings.lines()
        return "\n".join(lines) + "\n"


async def serve(metrics: TriggersMetrics, host: str, port: int) -> web.AppRunner | None:
    """Serve ``/metrics`` on ``host:port`` (None: it cannot be bound, and the service goes on
    without: its job is the triggers); the caller cleans the runner up."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain",
                            headers={"X-Prometheus-Format": "0.0.4"})

    app = web.Application()
    app.router.add_get("/metrics", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        return None
    return runner
