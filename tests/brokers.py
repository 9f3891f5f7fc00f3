"""Real MQTT brokers for tests (Mosquitto from the repo's mosquitto.conf, the embedded amqtt broker), both with the
test users of every role and TLS listeners, and a paho probe."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from broker.embedded import BrokerThread, PortInUseError, TlsListeners
from broker.mosquitto_plugin import PLUGIN_LINE
from broker.mosquitto_plugin import build as build_plugin
from broker.users import UserDirectory
from tests.credentials import Certificates
from tests.credentials import password as test_password
from tests.processes import ChildProcess

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO_CONF = REPO_ROOT / "mosquitto.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_START_ATTEMPTS = 3

Transport = Literal["tcp", "websockets"]
Scheme = Literal["mqtt", "ws", "mqtts", "wss"]
SCHEMES: tuple[Scheme, ...] = ("mqtt", "ws", "mqtts", "wss")


class Listeners(Protocol):
    """Where a test broker listens (MQTT and WebSockets, each plain and over TLS) and the CA it is certified by."""

    kind: str
    host: str
    port: int
    ws_port: int
    tls_port: int
    wss_port: int
    certs: Certificates


class BrokerHandle(Listeners, Protocol):
    """What tests get from the `broker` fixture: where a broker listens and how to stop and restart it."""

    def url(self, user: str | None = "bridge", scheme: Scheme = "mqtt") -> str:
        """The broker's URL for `spc-bridge` (`--broker`), with the credentials of test user `user`."""

    def start(self) -> None:
        """Start (or restart) the broker on the same ports."""

    def stop(self) -> None:
        """Stop the broker."""


def terminate(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM a process by PID, SIGKILL if it has not exited within STOP_TIMEOUT."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)


_HANDED_OUT: set[int] = set()  # the ports free_port() has returned in this process


def free_port(host: str = HOST) -> int:
    """Return a TCP port on `host` that nothing listens on right now, and that this process has not been
    given before: the kernel may hand out a port just released again, so two calls in a row could return
    the same one (Mosquitto was once given one port for TCP and for WebSockets)."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no TCP port left that this process has not been given already")


def wait_for_ports(host: str, ports: Iterable[int], timeout: float, alive: Callable[[], bool]) -> None:
    """Wait until every port accepts a TCP connection; raise TimeoutError, or RuntimeError once `alive()` is false."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if not alive():
                raise RuntimeError(f"broker exited before port {port} accepted connections")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"port {port} on {host} did not accept connections within {timeout} s") from None
                time.sleep(0.05)


def port_of(broker: Listeners, scheme: Scheme) -> int:
    """The port of the broker's listener for `scheme`."""
    if scheme in ("mqtts", "wss"):
        return broker.tls_port if scheme == "mqtts" else broker.wss_port
    return broker.port if scheme == "mqtt" else broker.ws_port


class _BrokerUrl:
    """`url()` for the test brokers."""

    def url(self: Listeners, user: str | None = "bridge", scheme: Scheme = "mqtt") -> str:
        """The broker's URL for `spc-bridge` (`--broker`), with the credentials of test user `user`."""
        credentials = f"{user}:{test_password(user)}@" if user is not None else ""
        return f"{scheme}://{credentials}{self.host}:{port_of(self, scheme)}"


def mosquitto_config(conf: str, ports: tuple[int, int, int, int], persistence_dir: Path, users: Path,
                     certs: Certificates) -> str:
    """Rewrite the repo's mosquitto.conf: loopback-only listeners on `ports` (mqtt, ws, mqtts, wss), persistence
    in `persistence_dir`, the password and ACL files of the users directory `users`, the client-id plugin built
    from the repository, the server certificate of `certs`."""
    port, ws_port, tls_port, wss_port = ports
    directory = UserDirectory(users)
    rewrites = [
        (r"^listener 1883$", f"listener {port} {HOST}", 1),
        # Mosquitto 2.0 ignores a bind address on a WebSocket listener; an interface name keeps it on loopback.
        (r"^listener 9001$", f"listener {ws_port} lo", 1),
        (r"^listener 8883$", f"listener {tls_port} {HOST}", 1),
        (r"^listener 9443$", f"listener {wss_port} lo", 1),
        (r"^persistence_location .*$", f"persistence_location {persistence_dir}/", 1),
        (r"^password_file .*$", f"password_file {directory.mosquitto_passwords}", 1),
        (r"^acl_file .*$", f"acl_file {directory.mosquitto_acl}", 1),
        (PLUGIN_LINE.pattern, f"plugin {build_plugin()}", 1),
        (r"^certfile .*$", f"certfile {certs.server_cert}", 2),
        (r"^keyfile .*$", f"keyfile {certs.server_key}", 2),
    ]
    for pattern, replacement, expected in rewrites:
        conf, count = re.subn(pattern, replacement, conf, flags=re.MULTILINE)
        if count != expected:
            raise ValueError(f"mosquitto.conf: expected {expected} line(s) matching {pattern!r}, found {count}")
    # Started as root, Mosquitto drops to the "mosquitto" user, which cannot write to the test's directory.
    return f"{conf}\nuser {getpass.getuser()}\n"


class MosquittoProcess(_BrokerUrl):
    """A Mosquitto subprocess running the repo's mosquitto.conf on fixed ports; restartable."""

    kind = "mosquitto"

    def __init__(self, workdir: Path, ports: tuple[int, int, int, int], users: Path, certs: Certificates) -> None:
        self.host = HOST
        self.port, self.ws_port, self.tls_port, self.wss_port = ports
        self.certs = certs
        self.workdir = workdir
        self.conf_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.conf_path.write_text(mosquitto_config(MOSQUITTO_CONF.read_text(), ports, workdir, users, certs))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The running Mosquitto's PID, None while stopped."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start Mosquitto and wait (bounded) until every port accepts connections."""
        if self._proc is not None:
            raise RuntimeError("mosquitto is already running")
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)], stdout=log, stderr=subprocess.STDOUT)
        self._proc = proc
        try:
            wait_for_ports(self.host, (self.port, self.ws_port, self.tls_port, self.wss_port), START_TIMEOUT,
                           lambda: proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}; mosquitto log:\n{self.log_tail()}") from None

    def save(self) -> None:
        """Make Mosquitto write its database now (SIGUSR1) and wait (bounded) until the new file is in place:
        what it holds then survives a SIGKILL, whatever mosquitto.conf's autosave_interval."""
        if self._proc is None:
            raise RuntimeError("mosquitto is not running")
        database = self.workdir / "mosquitto.db"

        def stamp() -> tuple[int, int] | None:
            try:
                found = database.stat()
            except FileNotFoundError:
                return None
            return found.st_ino, found.st_mtime_ns

        before = stamp()
        os.kill(self._proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + START_TIMEOUT
        while stamp() in (before, None):
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto did not save its database within {START_TIMEOUT} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop Mosquitto by PID: SIGTERM (it saves its database), SIGKILL if it has not exited within STOP_TIMEOUT."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines Mosquitto logged."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _free_ports() -> tuple[int, int, int, int]:
    return free_port(), free_port(), free_port(), free_port()


def start_mosquitto(tmp_path: Path, users: Path, certs: Certificates) -> MosquittoProcess:
    """Start Mosquitto from the repo's mosquitto.conf on free loopback ports with persistence in `tmp_path`,
    the users of the users directory `users` and the server certificate of `certs`."""
    for _ in range(_START_ATTEMPTS - 1):
        mosquitto = MosquittoProcess(tmp_path, _free_ports(), users, certs)
        try:
            mosquitto.start()
            return mosquitto
        except RuntimeError as exc:
            # Another process may take a port between free_port() and Mosquitto's bind; pick new ones.
            if not any(taken in str(exc) for taken in ("Address already in use", "Unable to create websockets")):
                raise
    mosquitto = MosquittoProcess(tmp_path, _free_ports(), users, certs)
    mosquitto.start()
    return mosquitto


RESTART_BIND_S = 10.0


class EmbeddedBrokerThread(BrokerThread, _BrokerUrl):
    """The embedded broker in a background thread with the test users and TLS, as a test broker handle."""

    kind = "embedded"

    def __init__(self, ports: tuple[int, int, int, int], users: Path, certs: Certificates) -> None:
        port, ws_port, tls_port, wss_port = ports
        super().__init__(HOST, port, ws_port, users=users,
                         tls=TlsListeners(certs.server_cert, certs.server_key, tls_port, wss_port, certs.ca))
        self.tls_port, self.wss_port = tls_port, wss_port
        self.certs = certs
        self._started = False

    def start(self) -> None:
        """Start, or restart on the same ports. A restart tries again for up to RESTART_BIND_S while a port
        is taken: for a moment it can be a client connection's own local port (on loopback a reconnect to
        the stopped broker may even connect to itself); a first start fails at once, for other ports."""
        deadline = time.monotonic() + RESTART_BIND_S
        while True:
            try:
                super().start()
                break
            except PortInUseError:
                if not self._started or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._started = True


def start_embedded_broker(users: Path, certs: Certificates) -> EmbeddedBrokerThread:
    """Start the embedded broker in a background thread on free loopback ports, with the users of the users
    directory `users` and the server certificate of `certs`."""
    for _ in range(_START_ATTEMPTS - 1):
        broker = EmbeddedBrokerThread(_free_ports(), users, certs)
        try:
            broker.start()
            return broker
        except PortInUseError:
            pass  # another process took a port between free_port() and the bind; pick new ones
    broker = EmbeddedBrokerThread(_free_ports(), users, certs)
    broker.start()
    return broker


class EmbeddedBrokerProcess(ChildProcess, _BrokerUrl):
    """`spc-bridge broker`, the embedded broker as a process of its own (as sites run it), with the test users and
    TLS on free loopback ports; a test broker handle (not started yet). Nothing of the test's process (its threads,
    its collections of a large heap) delays it."""

    kind = "spc-bridge broker"

    def __init__(self, tmp_path: Path, users: Path, certs: Certificates) -> None:
        self.host = HOST
        self.port, self.ws_port, self.tls_port, self.wss_port = _free_ports()
        self.certs = certs
        super().__init__(["broker", "--users", str(users), "--tls-cert", str(certs.server_cert),
                          "--tls-key", str(certs.server_key), "--tls-ca", str(certs.ca),
                          "--port", str(self.port), "--ws-port", str(self.ws_port),
                          "--tls-port", str(self.tls_port), "--wss-port", str(self.wss_port)],
                         tmp_path / "broker.log", "(Ctrl-C stops it)")


class ConnectionRefused(ConnectionError):
    """The broker answered the CONNECT with a failure (a wrong password, no user name, ...)."""


class MqttProbe:
    """A paho-mqtt (MQTT 3.1.1) client on TCP or WebSockets, plain or TLS, logged in as test user `user` (None:
    anonymous) unless given another `password`, that records what it receives; every wait is bounded.
    `source`: the local address it connects from (any of 127.0.0.0/8; the embedded broker throttles failed
    logins per address).

    Raises ConnectionRefused if the broker refuses it, TimeoutError if it does not answer.
    """

    def __init__(
        self,
        broker: Listeners,
        transport: Transport = "tcp",
        *,
        tls: bool = False,
        user: str | None = "admin",
        password: str | None = None,
        client_id: str = "",
        clean_session: bool = True,
        source: str = "",
        manual_ack: bool = False,
        will: tuple[str, bytes] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.timeout = timeout
        self.messages: list[mqtt.MQTTMessage] = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._connack = threading.Event()
        self._refusal: ReasonCode | None = None
        self._changed = threading.Condition()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            transport=transport,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,  # a probe connects when its test says so, never by itself
        )
        self.client.manual_ack_set(manual_ack)
        if user is not None:
            self.client.username_pw_set(user, password if password is not None else test_password(user))
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        if tls:
            self.client.tls_set_context(ssl.create_default_context(cafile=broker.certs.ca))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        scheme: Scheme = ("wss" if tls else "ws") if transport == "websockets" else ("mqtts" if tls else "mqtt")
        port = port_of(broker, scheme)
        where = f"{broker.kind} on {scheme} port {port}"
        self.client.connect(broker.host, port, keepalive=30, bind_address=source)
        self.client.loop_start()
        if not self._connack.wait(timeout):
            self.close()
            raise TimeoutError(f"no CONNACK from {where} within {timeout} s")
        if self._refusal is not None:
            self.close()
            raise ConnectionRefused(f"{where} refused {user!r}: {self._refusal}")

    def subscribe(self, topic: str | list[str], qos: int = 1) -> None:
        """Subscribe to a filter (or several in one SUBSCRIBE), wait for the SUBACK and raise if the broker
        refused."""
        result, mid = self.client.subscribe(topic if isinstance(topic, str) else [(t, qos) for t in topic], qos)
        if mid is None:
            raise ConnectionError(f"subscribe to {topic!r} failed: {result}")
        with self._changed:
            if not self._changed.wait_for(lambda: mid in self._subacks, self.timeout):
                raise TimeoutError(f"no SUBACK for {topic!r} within {self.timeout} s")
            if any(code.is_failure for code in self._subacks[mid]):
                raise PermissionError(f"subscription to {topic!r} refused: {self._subacks[mid]}")

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish and, for QoS 1 and 2, wait until the broker has acknowledged it."""
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic!r} not acknowledged within {self.timeout} s")

    def wait_for(self, topic: str, count: int = 1, timeout: float | None = None) -> list[mqtt.MQTTMessage]:
        """Wait until `count` messages on `topic` have arrived and return all of them so far (bounded)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.received(topic)) >= count, timeout or self.timeout)
            return self.received(topic)

    def received(self, topic: str) -> list[mqtt.MQTTMessage]:
        """The messages on `topic` received so far."""
        return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        """Disconnect cleanly and stop paho's network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def drop(self) -> None:
        """Cut the connection without a DISCONNECT, as a power cut would (the broker sends the will)."""
        sock = self.client.socket()
        if sock is not None:
            # Shut down under paho (and under TLS or WebSocket framing): paho's loop sees the end and stops.
            with socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM) as connection:
                connection.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: object) -> None:
        if reason_code.is_failure:
            self._refusal = reason_code
        else:
            self.connected.set()
        self._connack.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: object) -> None:
        self.disconnected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reason_codes: list[ReasonCode], properties: object) -> None:
        with self._changed:
            self._subacks[mid] = reason_codes
            self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
