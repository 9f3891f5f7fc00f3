"""``spc-bridge dashboard``: serve the dashboard's files over HTTP; the page itself talks MQTT to the broker.

The paths are fixed at start, so only those exist (no listing, no path outside the site). Nothing is
secret in them: the user logs in to the broker from the page.
"""

import logging
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from bridge.dashboard.site import HOST_PLACEHOLDER, File, site
from bridge.wsgi import App, HttpServer, StartResponse

log = logging.getLogger(__name__)

_NO_STORE = {"/config.json", "/js/contract.js", "/index.html"}


def _policy(broker_ws: str | None) -> str:
    """The Content-Security-Policy: our own scripts only, and WebSockets to the broker (MQTT.js runs its timers
    in a worker made from a blob, so that a tab in the background keeps its keep-alive)."""
    broker = "ws: wss:"
    if broker_ws is not None and HOST_PLACEHOLDER not in broker_ws:
        parts = urlsplit(broker_ws)
        broker = f"{parts.scheme}://{parts.netloc}"
    return (f"default-src 'self'; connect-src 'self' {broker}; img-src 'self' data: blob:; "
            "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


def dashboard_app(files: dict[str, File], policy: str) -> App:
    """The WSGI app serving ``files`` (GET and HEAD), ``/`` being ``/index.html``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        path = "/index.html" if path == "/" else path
        common = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                  ("Content-Security-Policy", policy)]
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [*common, ("Allow", "GET, HEAD"),
                                                      ("Content-Type", "text/plain")])
            return [b"only GET and HEAD\n"]
        file = files.get(path)
        if file is None:
            start_response("404 Not Found", [*common, ("Content-Type", "text/plain")])
            return [b"not found\n"]
        body = file.body()
        cache = "no-store" if path in _NO_STORE else "no-cache"  # revalidated: an upgrade shows at once
        start_response("200 OK", [*common, ("Content-Type", file.content_type), ("Cache-Control", cache),
                                  ("Content-Length", str(len(body)))])
        return [b"" if method == "HEAD" else body]

    return app


class DashboardServer(HttpServer):
    """The dashboard on ``host:port`` while open."""

    def __init__(self, host: str, port: int, broker_ws: str | None) -> None:
        super().__init__(dashboard_app(site(broker_ws), _policy(broker_ws)), host, port, "dashboard", "--port")


def run_dashboard(host: str, port: int, broker_ws: str, stop: threading.Event) -> int:
    """Serve until ``stop``; the exit code."""
    with DashboardServer(host, port, broker_ws) as server:
        log.info("dashboard on %s/ (the page connects to the broker at %s)", server.base_url, broker_ws)
        stop.wait()
    log.info("dashboard stopped")
    return 0
