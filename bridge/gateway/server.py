"""The WebSocket server at ws://host:port/ws: token check, client messages, lifetime of the gateway's tasks."""

import asyncio
import errno
import hmac
import logging
import threading
from contextlib import AbstractContextManager, nullcontext
from http import HTTPStatus
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosedError
from websockets.http11 import Request, Response

from bridge import version
from bridge.gateway.connections import MAX_SUBSCRIPTIONS, Client, ConnectionManager
from bridge.gateway.feed import MqttFeed
from bridge.gateway.metrics import GatewayMetrics
from bridge.gateway.protocol import (
    Ping, ProtocolError, Subscribe, error_message, ids_reply, parse_client_message, pong,
)
from bridge.gateway.settings import PATH, GatewaySettings
from bridge.metrics_server import MetricsServer

log = logging.getLogger("spc-bridge.gateway")
# websockets logs every connection and every refused handshake at INFO; the gateway logs its own lines.
_websockets_log = logging.getLogger("spc-bridge.gateway.websockets")
_websockets_log.setLevel(logging.WARNING)

# A message up to this size is read and, above protocol.MAX_MESSAGE, answered with an error; a larger
# one closes the connection (1009): the gateway never holds more of one client's message than this.
MAX_FRAME = 1024 * 1024
CLOSE_TIMEOUT = 2.0     # seconds to wait for a client's close frame
STOP_TIMEOUT = 5.0
STOP_POLL = 0.2


class GatewayError(RuntimeError):
    """The gateway could not start, or had to stop; the message is one line meant for the user."""


class Gateway:
    """The seed's WebSocket protocol served from MQTT events; use as ``async with Gateway(settings)``."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.manager = ConnectionManager(settings.heartbeat_interval, settings.heartbeat_timeout,
                                         settings.max_pending)
        self.feed = MqttFeed(settings.broker, self.manager, settings.tls_context())
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose when the settings say 0)."""
        if self._server is None:
            raise RuntimeError("the gateway is not running")
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """Where dashboards connect."""
        return f"ws://{self.settings.host}:{self.port}{PATH}"

    async def start(self) -> None:
        """Listen, subscribe to the broker and start the cleanup loop; GatewayError if it cannot listen."""
        host, port = self.settings.host, self.settings.port
        try:
            # ping_interval=None: the seed's own heartbeat (ping messages, stale cleanup) is the only one.
            self._server = await serve(
                self._handle, host, port, process_request=self._check_request, ping_interval=None,
                max_size=MAX_FRAME, close_timeout=CLOSE_TIMEOUT, logger=_websockets_log,
            )
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise GatewayError(f"port {port} on {host} is already in use") from None
            raise GatewayError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        self._tasks = [asyncio.create_task(self.feed.run(), name="gateway-mqtt"),
                       asyncio.create_task(self.manager.cleanup_loop(), name="gateway-cleanup")]

    def failure(self) -> BaseException | None:
        """The error that ended one of the gateway's tasks, if any did."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    async def stop(self) -> None:
        """Close every connection with 1001, stop listening and end the tasks (bounded)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=False)
            await asyncio.wait_for(self.manager.close_all(), STOP_TIMEOUT)
            await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"the dashboards' WebSocket is at {PATH}\n")
        if self.settings.auth:
            given = parse_qs(url.query).get("token", [])
            if not any(hmac.compare_digest(g.encode(), t.encode()) for g in given for t in self.settings.tokens):
                log.warning("refused %s: %s", connection.remote_address, "wrong token" if given else "no token")
                return connection.respond(HTTPStatus.UNAUTHORIZED, f"a valid token is required: {PATH}?token=...\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        client = self.manager.connect(websocket)
        try:
            async for frame in websocket:
                self.manager.touch(client)  # any message, even a bad one, shows the client is alive
                self._on_message(client, frame)
        except ConnectionClosedError:
            pass  # the reason is logged below
        finally:
            reason = f" {websocket.close_reason}" if websocket.close_reason else ""
            self.manager.disconnect(client, f"closed ({websocket.close_code}{reason})")

    def _on_message(self, client: Client, frame: str | bytes) -> None:
        try:
            message = parse_client_message(frame)
        except ProtocolError as error:
            log.info("%s: %s", client, error)
            self.manager.send(client, error_message(str(error)))
            return
        if isinstance(message, Ping):
            self.manager.send(client, pong())
        elif isinstance(message, Subscribe):
            if not self.manager.subscribe(client, message.characteristic_ids):
                log.info("%s: refused a subscription beyond %d characteristics", client, MAX_SUBSCRIPTIONS)
                self.manager.send(client, error_message(
                    f"a client may subscribe to at most {MAX_SUBSCRIPTIONS} characteristics: these "
                    f"{len(message.characteristic_ids)} would make more; unsubscribe from some first"))
                return
            self.manager.send(client, ids_reply("subscribed", message.characteristic_ids))
        else:
            self.manager.unsubscribe(client, message.characteristic_ids)
            self.manager.send(client, ids_reply("unsubscribed", message.characteristic_ids))


def _metrics_server(gateway: Gateway) -> AbstractContextManager[object]:
    """/metrics and /healthz on --metrics-port while in the block (nothing without it); GatewayError if it cannot listen."""
    settings = gateway.settings
    if settings.metrics_port is None:
        return nullcontext()
    metrics = GatewayMetrics(gateway.manager, gateway.feed)
    try:
        server = MetricsServer(metrics.registry, metrics.problems, settings.metrics_host, settings.metrics_port)
    except OSError as error:
        raise GatewayError(str(error)) from None
    log.info("metrics at %s, health at /healthz", server.url)
    return server


async def _serve(settings: GatewaySettings, stop: threading.Event) -> None:
    gateway = Gateway(settings)
    with _metrics_server(gateway):
        await _run(gateway, stop)


async def _run(gateway: Gateway, stop: threading.Event) -> None:
    settings = gateway.settings
    async with gateway:
        log.info("spc-bridge %s gateway listening on %s (%s; heartbeat %g s, timeout %g s; fed by %s) "
                 "(Ctrl-C stops it)", version(), gateway.url, "token required" if settings.auth else "no token",
                 settings.heartbeat_interval, settings.heartbeat_timeout, settings.broker)
        while not stop.is_set():
            failure = gateway.failure()
            if failure is not None:
                log.error("a gateway task failed", exc_info=failure)
                raise GatewayError(f"stopped by an unexpected error: {failure!r}") from failure
            await asyncio.sleep(STOP_POLL)
        manager = gateway.manager
        log.info("gateway stopping: %d messages sent to dashboards, %d dropped (clients too slow or gone); closing "
                 "%d connections", manager.sent, manager.dropped, len(manager),
                 extra={"sent": manager.sent, "dropped": manager.dropped, "connections": len(manager)})


def run_gateway(settings: GatewaySettings, stop: threading.Event) -> int:
    """Serve dashboards until ``stop`` is set; the exit code (GatewayError if it cannot start)."""
    asyncio.run(_serve(settings, stop))
    return 0
