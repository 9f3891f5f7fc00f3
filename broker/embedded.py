"""The embedded amqtt broker: MQTT over TCP and over WebSockets, optionally over TLS too, with the users and
roles of a users directory (broker.users) or, on localhost only, open to anyone; as an async context manager."""

from __future__ import annotations

import asyncio
import errno
import gc
import ipaddress
import logging
import math
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import websockets
from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, WriterAdapter
from amqtt.contexts import ListenerType
from amqtt.errors import BrokerError, PluginError
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session
from websockets.asyncio.server import Server as WebSocketServer
from websockets.exceptions import InvalidMessage

from broker.amqtt_access import AccessControlBroker, ReadAclHandler, RoleAclPlugin
from broker.amqtt_coalesce import CoalescingWriter
from broker.amqtt_fixes import AtLeastOnceBrokerHandler, KeepAliveBrokerHandler
from broker.amqtt_login import PasswordLoginPlugin
from broker.users import UserDirectory, UsersError

__all__ = [
    "BrokerStartError",
    "BrokerThread",
    "EmbeddedBroker",
    "OpenAuthPlugin",
    "PortInUseError",
    "TlsListeners",
    "is_loopback",
    "run_broker",
    "serve_until_signalled",
]

# amqtt logs every connection at INFO, and the state machine library it uses every transition.
_NOISY_LOGGERS = ("amqtt", "transitions")
_STOP_TIMEOUT = 10.0
_START_TIMEOUT = 10.0
GC_FULL_AFTER = 1000  # collections of the middle generation before a full one (CPython's default: 10)
# How long a reconnecting client waits for the broker to finish with its previous connection.
_TAKEOVER_TIMEOUT = 5.0


class BrokerStartError(RuntimeError):
    """The embedded broker could not start; the message is one line meant for the user."""


class PortInUseError(BrokerStartError):
    """A listener's port is already taken by another process."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is already in use (is another broker running?)")
        self.host = host
        self.port = port


class _QuietLogFilter(logging.Filter):
    """Drop amqtt and websockets records that are noise to whoever runs the broker.

    Dropped: the traceback of a start-up failure that EmbeddedBroker reports itself in one line, and the
    errors logged for a connection that closed before sending anything (port probes, health checks).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BrokerStartError):
            return False
        if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):
            return False
        return "No data to decode MQTT packet fixed header" not in record.getMessage()


_WS_LOGGER = logging.getLogger("amqtt.broker.websockets")
for _logger in (logging.getLogger("amqtt.broker"), _WS_LOGGER):
    _logger.addFilter(_QuietLogFilter())


class OpenAuthPlugin(BaseAuthPlugin):
    """Admit every client without marking its session anonymous.

    amqtt's own AnonymousAuthPlugin sets `session.is_anonymous` on every client it admits, and amqtt then
    drops such sessions on disconnect and queues nothing for them (amqtt/broker.py:365 and :1037), so a
    `clean_session=False` subscriber would lose its subscriptions and QoS 1 messages. Mosquitto with
    `allow_anonymous true` keeps them; this plugin does the same.
    """

    async def authenticate(self, *, session: Session) -> bool:
        """Admit the client."""
        return True


def _plugin_path(plugin: type) -> str:
    return f"{plugin.__module__}.{plugin.__qualname__}"


def is_loopback(host: str) -> bool:
    """Whether `host` is an address of this machine only (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TlsListeners:
    """The broker's certificate chain and key (PEM), the ports of its MQTT/TLS and WebSocket/TLS listeners, and
    the CA certificates that a client certificate must be signed by, if a client presents one.

    amqtt verifies a client certificate when one is presented (without `ca_file`, against the system's CAs) and
    does not require one: clients log in with their password either way.
    """

    cert_file: Path
    key_file: Path
    port: int = 8883
    ws_port: int = 9443
    ca_file: Path | None = None


class _Handler(AtLeastOnceBrokerHandler, KeepAliveBrokerHandler, ReadAclHandler):
    """amqtt's broker-side handler with our fixes: QoS 1 messages kept until acknowledged, silent clients
    dropped, read ACL on resending."""


class _Broker(AccessControlBroker):
    """amqtt's Broker with access control that holds (broker/amqtt_access.py), a WebSocket listener paho can stay
    connected to, a clear port-in-use error, QoS 1 messages kept until the client acknowledges them (amqtt #401),
    and a session that a client takes over from its own stale connection left online; subscriptions in a topic
    index (broker/amqtt_index.py) and TCP writes coalesced (broker/amqtt_coalesce.py)."""

    async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               listener_name: str) -> None:
        # amqtt's own (amqtt/broker.py:439-440), with the writer that sends a turn's packets at once
        await self._client_connected(listener_name, StreamReaderAdapter(reader), CoalescingWriter(writer))

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        # amqtt #401 and the read ACL: every connection gets our _Handler (broker/amqtt_fixes.py, amqtt_access.py)
        # instead of the BrokerProtocolHandler that amqtt builds from the CONNECT (amqtt/broker.py:489). That one is
        # still fresh here: no session attached, no task started (amqtt/mqtt/protocol/broker_handler.py:248),
        # and amqtt attaches and starts whichever one this returns (amqtt/broker.py:579-593). A subclass for our
        # brokers only, rather than patching amqtt's class: nothing global changes, so nothing needs patching
        # once, and other amqtt brokers or clients in the same process keep amqtt's behaviour. The client is
        # authenticated by now (AccessControlBroker), so a wrong password cannot close another's connection.
        _, session = await super()._initialize_client_session(reader, writer, remote_address, remote_port)
        # MQTT-3.1.2-24: a client silent for one and a half times its keep-alive is disconnected; amqtt's
        # reader waits session.keep_alive for each packet (broker/amqtt_fixes.py, KeepAliveBrokerHandler).
        session.keep_alive = math.ceil(session.keep_alive * 1.5)
        await self._close_previous_connection(session)
        return _Handler(self.plugins_manager), session

    async def _close_previous_connection(self, session: Session) -> None:
        """Close the connection a reconnecting persistent session still has, and wait until amqtt is done with it.

        A client that comes back before the broker noticed its old connection die (power cut, NAT timeout) makes
        amqtt take the session over (amqtt/broker.py:570-575): it stops the old handler but leaves the old
        connection's task running, which then marks the session disconnected (amqtt/broker.py:697-698) while
        the new connection is using it. From then on every message for the session is queued for a later
        connection (amqtt/broker.py:1034-1040) instead of sent. Doing the closing here, before amqtt looks at
        the session's state, and waiting for that task, lets amqtt connect the session as after any disconnect.
        """
        if not session.transitions.is_connected():
            return
        _, previous = self._sessions.get(session.client_id, (None, None))
        if previous is None:
            return
        await previous.handle_connection_closed()  # what amqtt's take-over does first, then the same stop
        await previous.stop()
        deadline = asyncio.get_running_loop().time() + _TAKEOVER_TIMEOUT
        while session.transitions.is_connected() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        # Still connected after the bound: amqtt's own take-over goes on from here, as without this method.

    async def _create_server_instance(
        self,
        listener_name: str,
        listener_type: ListenerType,
        address: str | None,
        port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> asyncio.Server | WebSocketServer:
        try:
            if listener_type != ListenerType.WS:
                return await super()._create_server_instance(listener_name, listener_type, address, port, ssl_context)
            # amqtt's own WS server pings every 20 s; paho answers with an unmasked pong, which websockets
            # rejects ("incorrect masking") by closing the connection. MQTT's keep-alive already detects
            # dead peers, so the WebSocket pings are turned off.
            return await websockets.serve(
                partial(self.ws_connected, listener_name=listener_name),
                address,
                port,
                ssl=ssl_context,
                subprotocols=[websockets.Subprotocol("mqtt")],
                ping_interval=None,
                logger=_WS_LOGGER,
            )
        except OSError as exc:
            host = address or "0.0.0.0"
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(host, port) from None
            raise BrokerStartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    async def _start_listeners(self) -> None:
        # amqtt leaves the listeners that did start open when a later one fails; close them.
        try:
            await super()._start_listeners()
        except BaseException:
            for server in self._servers.values():
                await server.close_instance()
            self._servers.clear()
            raise


class EmbeddedBroker:
    """An amqtt broker with a TCP and a WebSocket listener (subprotocol "mqtt"), and TLS versions of both if given.

    Use as `async with EmbeddedBroker(port=1883, ws_port=9001, users=Path("users")) as broker: ...`. With a
    users directory (broker.users) every client must log in and gets its role's rights on every listener;
    without one (`users=None`) anyone may do anything, so the broker then refuses to listen beyond localhost.
    MQTT 3.1.1 only. `log_level` is applied to the "amqtt" and "transitions" loggers, which are chatty at INFO.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        ws_port: int = 9001,
        *,
        users: Path | None = None,
        tls: TlsListeners | None = None,
        log_level: int = logging.WARNING,
    ) -> None:
        if users is None and not is_loopback(host):
            raise BrokerStartError(f"anonymous access is for localhost only: give users to listen on {host}")
        self.host = host
        self.port = port
        self.ws_port = ws_port
        self.users = users
        self.tls = tls
        self.log_level = log_level
        self._broker: _Broker | None = None

    def config(self) -> dict[str, Any]:
        """The amqtt configuration (see amqtt.contexts.BrokerConfig) this broker starts with."""
        # amqtt requires a listener named "default"; its settings are inherited by the others.
        listeners: dict[str, dict[str, Any]] = {
            "default": {"type": "tcp", "bind": f"{self.host}:{self.port}"},
            "ws": {"type": "ws", "bind": f"{self.host}:{self.ws_port}"},
        }
        if self.tls is not None:
            files = {"ssl": True, "certfile": str(self.tls.cert_file), "keyfile": str(self.tls.key_file),
                     "cafile": str(self.tls.ca_file) if self.tls.ca_file is not None else None}
            listeners["tls"] = {"type": "tcp", "bind": f"{self.host}:{self.tls.port}", **files}
            listeners["wss"] = {"type": "ws", "bind": f"{self.host}:{self.tls.ws_port}", **files}
        return {"listeners": listeners, "plugins": self._plugins()}

    def _plugins(self) -> dict[str, dict[str, Any]]:
        # No $SYS plugin and no event/packet logger plugins: only what serving clients needs.
        if self.users is None:
            return {_plugin_path(OpenAuthPlugin): {}}
        directory = UserDirectory(self.users)
        rights = {user.name: user.rights() for user in directory.load()}
        if not directory.amqtt_passwords.exists():
            raise UsersError(f"{directory.amqtt_passwords}: no such file: give the users passwords with "
                             "`spc-bridge user add`")
        return {
            _plugin_path(PasswordLoginPlugin): {"users": str(directory.path)},
            _plugin_path(RoleAclPlugin): {
                "publish": {name: list(allowed.publish) for name, allowed in rights.items()},
                "read": {name: list(allowed.read) for name, allowed in rights.items()},
            },
        }

    async def start(self) -> None:
        """Open the listeners; raise BrokerStartError (PortInUseError for a taken port) if that fails."""
        if self._broker is not None:
            raise BrokerStartError("the embedded broker is already running")
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(self.log_level)
        try:
            broker = _Broker(self.config())
        except UsersError as exc:
            raise BrokerStartError(str(exc)) from None
        except (OSError, ValueError, PluginError) as exc:  # a missing certificate or password file
            raise BrokerStartError(f"embedded broker: {exc}") from exc
        try:
            await broker.start()
        except BrokerError as exc:
            if isinstance(exc.__cause__, BrokerStartError):
                raise exc.__cause__ from None
            raise BrokerStartError(f"embedded broker on {self.host}: {exc}") from exc
        self._broker = broker

    async def stop(self) -> None:
        """Disconnect every client and close the listeners (bounded in time)."""
        broker, self._broker = self._broker, None
        if broker is not None:
            await asyncio.wait_for(broker.shutdown(), _STOP_TIMEOUT)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class BrokerThread:
    """An EmbeddedBroker served by its own event loop in a background thread (``with`` or start/stop).

    For synchronous callers: the demo, which runs the bridge beside it, and the tests.
    """

    def __init__(self, host: str, port: int, ws_port: int, *, users: Path | None = None,
                 tls: TlsListeners | None = None) -> None:
        self.host = host
        self.port = port
        self.ws_port = ws_port
        self.users = users
        self.tls = tls
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start the broker and wait (bounded) until it listens; re-raise its start-up error."""
        if self._thread is not None:
            raise RuntimeError("the embedded broker is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="embedded-broker",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise TimeoutError(f"embedded broker did not start within {_START_TIMEOUT} s")
        if self._error is not None:
            self._thread.join(_STOP_TIMEOUT)
            self._thread = None
            raise self._error

    def stop(self) -> None:
        """Stop the broker and its thread (bounded)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        thread.join(_START_TIMEOUT + _STOP_TIMEOUT)
        if thread.is_alive():
            raise TimeoutError("embedded broker did not stop in time")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            async with EmbeddedBroker(self.host, self.port, self.ws_port, users=self.users, tls=self.tls):
                self._ready.set()
                await self._stop_requested.wait()
        except Exception as exc:  # handed to start(), which runs in the caller's thread
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


async def serve_until_signalled(broker: EmbeddedBroker,
                                on_ready: Callable[[EmbeddedBroker], None] | None = None) -> None:
    """Run `broker` until SIGINT or SIGTERM arrives, then stop it; `on_ready` is called once it listens."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with broker:
            if on_ready is not None:
                on_ready(broker)
            await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def run_broker(
    host: str = "127.0.0.1",
    port: int = 1883,
    ws_port: int = 9001,
    *,
    users: Path | None = None,
    tls: TlsListeners | None = None,
    log_level: int = logging.WARNING,
    on_ready: Callable[[EmbeddedBroker], None] | None = None,
) -> None:
    """Serve MQTT on `port`, MQTT over WebSockets on `ws_port` (and over TLS if `tls`) until SIGINT or SIGTERM.

    Blocking; `on_ready` is called once every listener is open. Raises BrokerStartError (PortInUseError for a
    taken port) with a one-line message if it cannot start.
    """
    broker = EmbeddedBroker(host, port, ws_port, users=users, tls=tls, log_level=log_level)
    # The broker's own process only. amqtt makes several objects per packet, and with the default thresholds a
    # full collection of the whole heap (20,000 retained messages with 10,000 characteristics) ran every few
    # seconds at 1,000 readings/s, each stopping every delivery for 37-48 ms: now at most one in a hundred
    # times as often. The young generations stay as they are, so cycles are still freed.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, GC_FULL_AFTER)
    asyncio.run(serve_until_signalled(broker, on_ready))
