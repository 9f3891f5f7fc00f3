"""The subscriber at the end of the chain: which readings' events arrived, when, and how late."""

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.config import parse_broker_url
from bridge.contract import ANY_CHARACTERISTIC, status_topic

TIMEOUT_S = 30.0
# An event's body -> the reading it is of (any hashable key), the seq that orders it (for the floor),
# and when the reading was sent (seconds since the epoch).
Identify = Callable[[dict[str, Any]], tuple[object, int, float]]


def by_seq(body: dict[str, Any]) -> tuple[object, int, float]:
    """A reading of the bridge's own JSON, by its ``seq``, sent at its ``ts`` (a sample event's ``timestamp``)."""
    seq = int(body["seq"])
    return seq, seq, datetime.fromisoformat(body.get("timestamp") or body["ts"]).timestamp()


class Arrival:
    """When the first event of a reading arrived (wall clock) and its latency in seconds."""

    __slots__ = ("at", "latency")

    def __init__(self, at: float, latency: float) -> None:
        self.at = at
        self.latency = latency


class Collector:
    """A paho subscriber (QoS 1) recording, per reading whose seq is at or above ``floor``, the first
    event's arrival; the latency is its arrival time minus the time the reading was sent (``identify``
    reads both from the event). With ``statuses``, it also records which characteristics said they are
    live on ``spc/<id>/status`` (a Sparkplug node's birth)."""

    def __init__(self, url: str, topic_filter: str, client_id: str, identify: Identify = by_seq,
                 statuses: bool = False) -> None:
        broker = parse_broker_url(url)
        self.floor = 0
        self.identify = identify
        self.arrivals: dict[object, Arrival] = {}
        self.live: set[int] = set()
        self.repeats = 0
        self._lock = threading.Lock()
        subscribed = threading.Event()
        filters = [(topic_filter, 1)] + ([(status_topic(ANY_CHARACTERISTIC), 1)] if statuses else [])
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  transport=broker.transport, protocol=paho.MQTTv311)
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, _u, _f, reason, _p: (
            None if reason.is_failure else c.subscribe(filters))
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not subscribed.wait(TIMEOUT_S):
            self.close()
            raise TimeoutError(f"the subscriber could not subscribe to {topic_filter} on {broker}")

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        at = time.time()
        body = json.loads(message.payload)
        if message.topic.endswith("/status"):
            if not body["stale"]:
                with self._lock:
                    self.live.add(int(body["characteristic_id"]))
            return
        key, seq, sent = self.identify(body)
        if seq < self.floor:
            return
        with self._lock:
            if key in self.arrivals:
                self.repeats += 1
            else:
                self.arrivals[key] = Arrival(at, at - sent)

    def reset(self, floor: int) -> None:
        """Forget what arrived; from now on ignore readings whose seq is below ``floor``."""
        with self._lock:
            self.floor = floor
            self.arrivals = {}
            self.live = set()
            self.repeats = 0

    @property
    def count(self) -> int:
        """Readings whose event has arrived since the last reset."""
        return len(self.arrivals)

    @property
    def live_count(self) -> int:
        """Characteristics that said they are live since the last reset."""
        return len(self.live)

    def wait_for(self, count: int, timeout: float, tick: Callable[[int], None], live: bool = False) -> bool:
        """Wait until ``count`` readings' events have arrived, or with ``live`` until ``count``
        characteristics have said they are live (``tick(so far)`` twice a second)."""
        def counted() -> int:
            return self.live_count if live else self.count

        deadline = time.monotonic() + timeout
        while counted() < count:
            if time.monotonic() > deadline:
                return False
            tick(counted())
            time.sleep(0.5 if deadline - time.monotonic() > 0.5 else 0.05)
        tick(counted())
        return True

    def snapshot(self) -> list[Arrival]:
        """The arrivals so far, in arrival order."""
        with self._lock:
            return sorted(self.arrivals.values(), key=lambda a: a.at)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
