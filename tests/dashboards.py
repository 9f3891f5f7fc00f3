"""What the gateway and browser tests share: two characteristics, the bridge and the gateway as real processes,
a client of the seed's WebSocket protocol, and gauge/operator actions over MQTT."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection, connect

from bridge.contract import (
    ACK_COMMAND, limits_topic, request_topic, response_topic, sample_topic, violation_topic,
)
from tests.brokers import BrokerHandle, MqttProbe, free_port
from tests.credentials import password
from tests.processes import ChildProcess, bridge_process

SHAFT, BORE = 1, 2
SHAFT_TOPIC, BORE_TOPIC = "line/shaft", "line/bore"  # the gauge test user may publish on line/#
# fixed limits: monitoring from the first reading
REASON_CODE = "tool_wear"  # the reason code of the dashboards' acknowledgements
SHAFT_CONFIG = f"""
[[characteristic]]
id = {SHAFT}
name = "Shaft length"
topic = "{SHAFT_TOPIC}"
chart = "imr"
center = 10.0
sigma = 1.0
rules = "rule1"
dispersion_rules = []
"""
CONFIG = SHAFT_CONFIG + f"""
[[characteristic]]
id = {BORE}
name = "Bore"
topic = "{BORE_TOPIC}"
chart = "imr"
center = 5.0
sigma = 1.0
rules = "rule1"
dispersion_rules = []
"""
WAIT = 15.0


def start_bridge(broker: BrokerHandle, tmp_path: Path, db_url: str | None = None) -> ChildProcess:
    """``spc-bridge run`` with CONFIG on ``db_url`` (default a SQLite file), started, its retained limits
    already on the broker."""
    config = tmp_path / "chars.toml"
    config.write_text(CONFIG)
    bridge = bridge_process(tmp_path, broker.url("bridge"), db_url or f"sqlite:///{tmp_path / 'spc.db'}", config)
    bridge.start()
    try:
        with MqttProbe(broker, user="dashboard") as probe:
            probe.subscribe(limits_topic(SHAFT))
            if not probe.wait_for(limits_topic(SHAFT), 1, timeout=WAIT):
                raise TimeoutError("the bridge published no limits")
    except BaseException:
        bridge.stop()
        raise
    return bridge


class GatewayProcess(ChildProcess):
    """``spc-bridge gateway`` fed by a broker as the dashboard user, on a free port (not started yet)."""

    def __init__(self, tmp_path: Path, broker: BrokerHandle, *options: str, name: str = "gateway") -> None:
        self.port = free_port()
        super().__init__(["gateway", "--broker", broker.url("dashboard"), "--port", str(self.port), *options],
                         tmp_path / f"{name}.log", "MQTT subscribed")

    def url(self, token: str | None = None) -> str:
        """Its WebSocket URL, with ``?token=`` when given."""
        url = f"ws://127.0.0.1:{self.port}/ws"
        return f"{url}?token={token}" if token is not None else url


def wait_for_log(process: ChildProcess, text: str, timeout: float = WAIT, count: int = 1) -> str:
    """Wait (bounded) until ``text`` appears ``count`` times in the process's output; the output."""
    deadline = time.monotonic() + timeout
    while process.output().count(text) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not logged {count} time(s) within {timeout} s:\n{process.output()[-3000:]}")
        time.sleep(0.05)
    return process.output()


def removals(log: str) -> dict[int, str]:
    """Why the gateway removed each client, by client number, from its log."""
    found = re.findall(r"client (\d+) \(127\.0\.0\.1:\d+\) removed: (.*); \d+ connected", log)
    return {int(number): why for number, why in found}


def gauge_readings(broker: BrokerHandle, topic: str, *values: float) -> None:
    """Publish readings as the gauge user, each acknowledged by the broker."""
    with MqttProbe(broker, user="gauge") as gauge:
        for value in values:
            gauge.publish(topic, str(value))


def acknowledge(broker: BrokerHandle, violation_id: int, reason: str, user: str = "operator") -> dict[str, Any]:
    """Acknowledge a violation as ``user`` over MQTT request/response; the bridge's response."""
    with MqttProbe(broker, user=user) as operator:
        operator.subscribe(response_topic(user, ACK_COMMAND))
        operator.publish(request_topic(user, ACK_COMMAND), json.dumps({"violation_id": violation_id, "reason_code": REASON_CODE,
                                                                 "reason": reason}))
        responses = operator.wait_for(response_topic(user, ACK_COMMAND), 1, timeout=WAIT)
        if not responses:
            raise TimeoutError(f"no response to the acknowledgement of violation {violation_id}")
        response: dict[str, Any] = json.loads(responses[0].payload)
        return response


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


class PacedGauge:
    """A gauge publishing ``{"value", "seq"}`` readings at a steady rate from a thread, and a dashboard
    subscribed to their samples, to time each reading from its publication to its sample event."""

    def __init__(self, broker: BrokerHandle, characteristic_id: int, topic: str, rate: float = 10.0) -> None:
        self.topic = topic
        self.interval = 1 / rate
        self.sent: dict[str, float] = {}   # seq -> when published (monotonic)
        self.seen: dict[str, float] = {}   # seq -> when its sample event arrived
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.watcher.username_pw_set("dashboard", password("dashboard"))
        self.watcher.on_message = self._on_sample
        subscribed = threading.Event()
        self.watcher.on_subscribe = lambda *_: subscribed.set()
        self.watcher.connect(broker.host, broker.port)
        self.watcher.loop_start()
        self.watcher.subscribe(sample_topic(characteristic_id), 1)
        if not subscribed.wait(WAIT):
            self.watcher.loop_stop()
            raise TimeoutError("the gauge's watcher could not subscribe")
        self.gauge = MqttProbe(broker, user="gauge")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_sample(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        seq = json.loads(message.payload).get("seq")
        with self._lock:
            self.seen.setdefault(seq, time.monotonic())

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(self.interval):
            seq = f"paced-{k}"
            with self._lock:
                self.sent[seq] = time.monotonic()
            self.gauge.publish(self.topic, json.dumps({"value": 10.0, "seq": seq}))
            k += 1

    def start(self) -> Self:
        """Start publishing."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop publishing, wait (bounded) for every sample event, disconnect (again: nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(WAIT)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and set(self.sent) - set(self.seen):
            time.sleep(0.05)
        self.gauge.close()
        self.watcher.disconnect()
        self.watcher.loop_stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def latencies(self) -> list[float]:
        """Seconds from publication to sample event of each reading sent (inf where none came)."""
        with self._lock:
            return [self.seen.get(seq, float("inf")) - at for seq, at in self.sent.items()]


class EventWatcher:
    """A dashboard user's MQTT subscription to a characteristic's violations, to learn their ids."""

    def __init__(self, broker: BrokerHandle, characteristic_id: int) -> None:
        self.topic = violation_topic(characteristic_id)
        self.probe = MqttProbe(broker, user="dashboard")
        self.probe.subscribe(self.topic)

    def violations(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` violations (bounded wait)."""
        messages = self.probe.wait_for(self.topic, count, timeout=WAIT)
        if len(messages) < count:
            raise TimeoutError(f"{len(messages)} of {count} violations on {self.topic}")
        return [json.loads(m.payload) for m in messages[:count]]

    def close(self) -> None:
        """Disconnect."""
        self.probe.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class SeedClient:
    """A client of the seed's protocol, as its documentation's Python example writes one (``websockets``)."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, receive_buffer: int | None = None) -> SeedClient:
        """Connect (bounded), with a small socket receive buffer if given; InvalidStatus if the gateway refuses."""
        if receive_buffer is None:
            return cls(await connect(url, open_timeout=5, close_timeout=2))
        address = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connecting: it sets the window
        sock.settimeout(5)
        sock.connect((address.hostname, address.port))
        sock.setblocking(False)
        return cls(await connect(url, sock=sock, open_timeout=5, close_timeout=2))

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        """Send a message (a dict as JSON; text or bytes as they are)."""
        await self.websocket.send(json.dumps(message) if isinstance(message, dict) else message)

    async def next(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next message (bounded wait)."""
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.websocket.recv(), timeout))
        self.received.append(message)
        return message

    async def until(self, message_type: str, timeout: float = WAIT, **payload: Any) -> dict[str, Any]:
        """Read until a message of ``message_type`` whose payload has these fields arrives (bounded)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no {message_type} {payload} within {timeout} s; got {self.received}")
            message = await self.next(remaining)
            body = message.get("payload", {})
            if message["type"] == message_type and all(body.get(k) == v for k, v in payload.items()):
                return message

    async def request(self, message: dict[str, Any] | str | bytes, reply: str) -> dict[str, Any]:
        """Send a message and return the reply of type ``reply`` (events in between are kept)."""
        await self.send(message)
        return await self.until(reply)

    async def close(self) -> None:
        """Close normally (bounded)."""
        await self.websocket.close()
