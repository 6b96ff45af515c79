"""The gateway's HTTP path with Kafka taken out: the real TrackingApp, whose publisher only
counts. Separates what the gateway's own code costs from what producing to Kafka costs."""

from gateway.app import TrackingApp, route
from gateway.metrics import Metrics
from gateway.projects import ProjectTable
from schemas.project import ProjectRecord


def create_app():
    projects = ProjectTable()
    projects.apply("bench.example", ProjectRecord.build("bench.example"))
    metrics = Metrics()

    async def publish(key: bytes, value: bytes) -> int:
        return 200

    tracking = TrackingApp(projects, publish, metrics, max_url_bytes=65536,
                           max_body_bytes=1 << 20)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        found = route(scope["path"])
        if found is None:  # /readyz for the harness
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await tracking(scope, receive, send, *found)

    return app
