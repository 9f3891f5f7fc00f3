"""The HTTP endpoint of the bridge and of the gateway: /metrics in Prometheus text format and /healthz.

prometheus_client's own start_http_server serves metrics only, so a small WSGI app routes /metrics to
prometheus_client's app and /healthz to the caller's health check. It runs on wsgiref, a thread per
request (a slow database probe never holds up a scrape), in daemon threads beside the process's work.
/healthz answers 200 ``{"status": "ok"}`` or 503 ``{"status": "unhealthy", "reasons": [...]}``.
"""

import errno
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)
JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
PATHS = ("/metrics", "/healthz")

Health = Callable[[], list[str]]  # why the process is unhealthy; empty while it is healthy
StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    """wsgiref writes every request to stderr; a probe every few seconds belongs in the debug log."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _app(registry: CollectorRegistry, health: Health) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
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


class MetricsServer:
    """Serves /metrics and /healthz on ``host:port`` while open; OSError with a one-line message if it cannot listen."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(host, port, _app(registry, health), server_class, _Quiet)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise OSError(f"metrics port {port} on {host} is already in use: stop what listens there "
                              "or choose another --metrics-port") from None
            raise OSError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where the metrics are served."""
        address = self._server.server_address
        host, port = str(address[0]), address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
