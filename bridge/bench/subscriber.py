"""The subscriber at the end of the chain: which readings' events arrived, when, and how late."""

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.config import parse_broker_url

TIMEOUT_S = 30.0


class Arrival:
    """When the first event of a reading arrived (wall clock) and its latency in seconds."""

    __slots__ = ("at", "latency")

    def __init__(self, at: float, latency: float) -> None:
        self.at = at
        self.latency = latency


class Collector:
    """A paho subscriber (QoS 1) recording, per reading ``seq`` at or above ``floor``, the first
    event's arrival; the latency is its arrival time minus the reading's ``ts`` (``timestamp``
    in a sample event)."""

    def __init__(self, url: str, topic_filter: str, client_id: str) -> None:
        broker = parse_broker_url(url)
        self.floor = 0
        self.arrivals: dict[int, Arrival] = {}
        self.repeats = 0
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  transport=broker.transport, protocol=paho.MQTTv311)
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, _u, _f, reason, _p: (
            None if reason.is_failure else c.subscribe(topic_filter, 1))
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not subscribed.wait(TIMEOUT_S):
            self.close()
            raise TimeoutError(f"the subscriber could not subscribe to {topic_filter} on {broker}")

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        at = time.time()
        body = json.loads(message.payload)
        seq = int(body["seq"])
        if seq < self.floor:
            return
        sent = datetime.fromisoformat(body.get("timestamp") or body["ts"]).timestamp()
        with self._lock:
            if seq in self.arrivals:
                self.repeats += 1
            else:
                self.arrivals[seq] = Arrival(at, at - sent)

    def reset(self, floor: int) -> None:
        """Forget what arrived; from now on ignore readings whose seq is below ``floor``."""
        with self._lock:
            self.floor = floor
            self.arrivals = {}
            self.repeats = 0

    @property
    def count(self) -> int:
        """Readings whose event has arrived since the last reset."""
        return len(self.arrivals)

    def wait_for(self, count: int, timeout: float, tick: Callable[[int], None]) -> bool:
        """Wait until ``count`` readings' events have arrived (``tick(count)`` twice a second)."""
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() > deadline:
                return False
            tick(self.count)
            time.sleep(0.5 if deadline - time.monotonic() > 0.5 else 0.05)
        tick(self.count)
        return True

    def snapshot(self) -> list[Arrival]:
        """The arrivals so far, in arrival order."""
        with self._lock:
            return sorted(self.arrivals.values(), key=lambda a: a.at)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
