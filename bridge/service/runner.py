"""The bridge's main loop: batches from MQTT through the pipeline, then acknowledge and publish.

Order of a batch: evaluate and commit (pipeline), then PUBACK the readings, then hand the events
to the publisher, so a reading is acknowledged only once stored and an event is sent only once
the data it describes is committed. A failed commit is retried with backoff; the readings stay
unacknowledged meanwhile.
"""

import gc
import logging
import threading
import time
from queue import Empty, SimpleQueue
from typing import Any

from bridge.config import CharacteristicConfig, Settings
from bridge.service.mqtt import Connected, Disconnected, MqttLink
from bridge.service.pipeline import Inbound, Pipeline
from bridge.service.publisher import Publisher
from bridge.store.queries import open_database

log = logging.getLogger(__name__)
FORGET_EVERY_S = 1.0
RETRY_MAX_S = 10.0
STOP_DRAIN_S = 5.0


def _collect(inbox: "SimpleQueue[Any]", size: int, wait_s: float, idle_s: float) -> list[Any]:
    """Up to ``size`` items: wait ``idle_s`` for the first, then ``wait_s`` for the rest."""
    try:
        items = [inbox.get(timeout=idle_s)]
    except Empty:
        return []
    deadline = time.monotonic() + wait_s
    while len(items) < size:
        remaining = deadline - time.monotonic()
        try:
            items.append(inbox.get_nowait() if remaining <= 0 else inbox.get(timeout=remaining))
        except Empty:
            break
    return items


class Bridge:
    """The running bridge: one MQTT link, one pipeline, one publisher."""

    def __init__(self, settings: Settings, configs: list[CharacteristicConfig]) -> None:
        self.settings = settings
        self.inbox: SimpleQueue[Any] = SimpleQueue()
        self.pipeline = Pipeline(open_database(settings.db_url), settings.client_id, configs,
                                 settings.max_payload)
        self.link = MqttLink(
            settings.broker, settings.client_id, self.inbox, self._confirmed,
            settings.mqtt_version, *(str(p) if p else None for p in
                                     (settings.ca_file, settings.cert_file, settings.key_file)))
        self.publisher = Publisher(self.link.publish, self.pipeline.pending_after)
        # The publisher bounds what awaits a PUBACK; paho's own window, when set, scans every
        # message in flight on each PUBACK (O(window) per event), so it is left unlimited.
        self.link.client.max_inflight_messages_set(0)
        self.ready = threading.Event()

    def _confirmed(self, mid: int) -> None:
        self.publisher.confirmations.put(mid)

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, then finish the work in hand and go offline."""
        self.publisher.add(self.pipeline.start())
        # The characteristics live as long as the process: out of the collector's sight, a full
        # collection no longer walks them (over 100 ms with 10,000 of them, a latency spike).
        gc.freeze()
        self.link.start(self.pipeline.topics)
        self.ready.set()
        retry: list[Inbound] = []
        backoff = 0.0
        forgotten = 0
        last_forget = time.monotonic()
        settings = self.settings
        while not stop.is_set():
            items = retry or _collect(self.inbox, settings.batch_size, settings.batch_ms / 1000, 0.05)
            messages = [i for i in items if isinstance(i, Inbound)]
            for item in items:
                if isinstance(item, (Connected, Disconnected)):
                    log.info("MQTT %s", item)
            if messages:
                retry = self._handle(messages)
                if retry:
                    backoff = min(RETRY_MAX_S, backoff * 2 or 0.1)
                    stop.wait(backoff)
                    continue
                backoff = 0.0
            self.publisher.pump()
            up_to = self.publisher.confirmed_up_to
            if up_to > forgotten and time.monotonic() - last_forget > FORGET_EVERY_S:
                self._forget(up_to)
                forgotten, last_forget = up_to, time.monotonic()
        self._finish(retry)

    def _handle(self, messages: list[Inbound]) -> list[Inbound]:
        """Process a batch; return it to retry when the commit failed."""
        try:
            events = self.pipeline.process(messages)
        except Exception:
            log.exception("could not commit a batch of %d messages; will retry", len(messages))
            return messages
        for message in messages:
            self.link.ack(message.token)
        self.publisher.add(events)
        return []

    def _forget(self, up_to: int) -> None:
        try:
            self.pipeline.forget_confirmed(up_to)
        except Exception:
            log.exception("could not delete confirmed outbox events")

    def _finish(self, retry: list[Inbound]) -> None:
        """Graceful stop: process what has arrived, publish what is committed, go offline."""
        deadline = time.monotonic() + STOP_DRAIN_S
        pending = retry + [i for i in _collect(self.inbox, 10**6, 0, 0) if isinstance(i, Inbound)]
        if pending:
            self._handle(pending)
        while not self.publisher.idle and time.monotonic() < deadline and self.link.connected.is_set():
            self.publisher.pump()
            time.sleep(0.01)
        self.publisher.pump()
        self._forget(self.publisher.confirmed_up_to)
        self.link.stop()
