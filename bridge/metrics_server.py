"""The HTTP endpoint of the bridge and of the gateway: /metrics in Prometheus text format and /healthz.

prometheus_client's own start_http_server serves metrics only, so a small WSGI app routes /metrics to
prometheus_client's app and /healthz to the caller's health check. It runs on wsgiref, a thread per
request (a slow database probe never holds up a scrape), in daemon threads beside the process's work.
/healthz answers 200 ``{"status": "ok"}`` or 503 ``{"status": "unhealthy", "reasons": [...]}``.
"""

import json
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app

from bridge.wsgi import App, HttpServer, StartResponse

JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
PATHS = ("/metrics", "/healthz")

Health = Callable[[], list[str]]  # why the process is unhealthy; empty while it is healthy


def _app(registry: CollectorRegistry, health: Health) -> App:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            reasons = health()
            body = {"status": "unhealthy", "reasons": reasons} if reasons else {"status": "ok"}
            start_response("503 Service Unavailable" if reasons else "200 OK", list(JSON))  # wsgiref adds to it
            return [json.dumps(body).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [f"nothing here: see {' and '.join(PATHS)}\n".encode()]

    return app


class MetricsServer(HttpServer):
    """Serves /metrics and /healthz on ``host:port`` while open; OSError with a one-line message if it cannot listen."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int) -> None:
        super().__init__(_app(registry, health), host, port, "metrics", "--metrics-port")

    @property
    def url(self) -> str:
        """Where the metrics are served."""
        return f"{self.base_url}/metrics"
