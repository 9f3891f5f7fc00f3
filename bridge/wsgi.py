"""A WSGI app served on a host and port by wsgiref, a daemon thread per request, while open."""

import errno
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
REQUEST_TIMEOUT_S = 30.0  # a client that sends nothing for this long loses its connection and its thread


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    """wsgiref writes every request to stderr; requests belong in the debug log."""

    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class HttpServer:
    """Serves ``app`` on ``host:port`` while open; OSError with a one-line message naming ``option`` (the
    command-line option that sets the port) if it cannot listen."""

    def __init__(self, app: App, host: str, port: int, what: str, option: str) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(host, port, app, server_class, _Quiet)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise OSError(f"{what} port {port} on {host} is already in use: stop what listens there "
                              f"or choose another {option}") from None
            raise OSError(f"cannot serve {what} on {host}:{port}: {error.strerror or error}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name=what, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        address = self._server.server_address
        host, port = str(address[0]), address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

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
