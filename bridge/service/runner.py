"""The bridge's main loop: batches from MQTT through the pipeline, then acknowledge and publish.

Order of a batch: evaluate and commit (pipeline), then PUBACK the readings, then hand the events
to the publisher, so a reading is acknowledged only once stored and an event is sent only once
the data it describes is committed. A message that cannot be processed is rejected alone
(bridge.service.isolation); while the database is unreachable the batch is retried with backoff,
its readings unacknowledged meanwhile.
"""

import gc
import logging
import threading
import time
from queue import Empty, SimpleQueue
from typing import Any

from sqlalchemy.exc import DBAPIError

from bridge.config import CharacteristicConfig, Settings
from bridge.service.mqtt import Connected, Disconnected, MqttLink, SubscriptionRefused
from bridge.service.pipeline import Inbound, Pipeline
from bridge.service.publisher import Publisher
from bridge.store.queries import create_tables, open_database

log = logging.getLogger(__name__)
FORGET_EVERY_S = 1.0
RETRY_MAX_S = 10.0
STOP_DRAIN_S = 5.0
IDLE_S = 0.05  # the longest wait for the network while nothing has arrived


def _take(inbox: "SimpleQueue[Any]", size: int) -> list[Any]:
    """Up to ``size`` items that are in the inbox now."""
    items: list[Any] = []
    while len(items) < size:
        try:
            items.append(inbox.get_nowait())
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
        if not self._open_database(stop):
            return
        self.publisher.add(self.pipeline.start())
        # The characteristics live as long as the process: out of the collector's sight, a full
        # collection no longer walks them (over 100 ms with 10,000 of them, a latency spike).
        # Collect first, or the start-up's garbage would be frozen with them.
        gc.collect()
        gc.freeze()
        self.link.start(self.pipeline.topics, self.pipeline.stale_filters)
        self.ready.set()
        retry: list[Inbound] = []
        backoff = 0.0
        forgotten = 0
        last_forget = time.monotonic()
        while not stop.is_set():
            items = retry or self._collect()
            messages = [i for i in items if isinstance(i, Inbound)]
            for item in items:
                if isinstance(item, (Connected, Disconnected)):
                    log.info("MQTT %s", item)
                elif isinstance(item, SubscriptionRefused):  # logged by the link; stored and published here
                    try:
                        self.publisher.add(self.pipeline.record_error(item.topic_filter, item.reason))
                    except Exception:
                        log.exception("could not record the refused subscription to %s", item.topic_filter)
            if messages:
                retry = self._handle(messages)
                if retry:
                    backoff = min(RETRY_MAX_S, backoff * 2 or 0.1)
                    self._pause(stop, backoff)
                    continue
                backoff = 0.0
            self.publisher.pump()
            up_to = self.publisher.confirmed_up_to
            if up_to > forgotten and time.monotonic() - last_forget > FORGET_EVERY_S:
                self._forget(up_to)
                forgotten, last_forget = up_to, time.monotonic()
        self._finish(retry)

    def _collect(self) -> list[Any]:
        """The next batch: what the network has brought, up to ``--batch-size`` items, waiting up
        to IDLE_S for the first and ``--batch-ms`` for more."""
        size, wait_s = self.settings.batch_size, self.settings.batch_ms / 1000
        self.link.poll(0.0 if self.inbox.qsize() else IDLE_S, size)
        items = _take(self.inbox, size)
        if items and wait_s:
            deadline = time.monotonic() + wait_s
            while len(items) < size and (left := deadline - time.monotonic()) > 0:
                self.link.poll(left, size - len(items))
                items += _take(self.inbox, size - len(items))
        return items

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait before retrying a batch, keeping the connection alive meanwhile."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self.link.poll(min(left, IDLE_S), 10**9)

    def _open_database(self, stop: threading.Event) -> bool:
        """Create the tables, waiting with backoff while the database is unreachable; False if
        stopped meanwhile."""
        backoff = 0.0
        while True:
            try:
                create_tables(self.pipeline.engine)
                return True
            except DBAPIError as error:
                backoff = min(RETRY_MAX_S, backoff * 2 or 1.0)
                log.warning("database %s unreachable (%s); next attempt in %g s",
                            self.pipeline.engine.url.render_as_string(hide_password=True),
                            str(error.orig).strip().splitlines()[0] if error.orig else error, backoff)
            if stop.wait(backoff):
                return False

    def _handle(self, messages: list[Inbound]) -> list[Inbound]:
        """Process a batch: acknowledge what is committed or rejected, publish its events; return
        the messages to retry (the database is unreachable)."""
        done = self.pipeline.process(messages)
        for message in done.handled:
            self.link.ack(message.token)
        self.publisher.add(done.events)
        return done.retry

    def _forget(self, up_to: int) -> None:
        try:
            self.pipeline.forget_confirmed(up_to)
        except Exception:
            log.exception("could not delete confirmed outbox events")

    def _finish(self, retry: list[Inbound]) -> None:
        """Graceful stop: process what has arrived, publish what is committed, go offline."""
        deadline = time.monotonic() + STOP_DRAIN_S
        self.link.poll(0.0, 10**9)
        pending = retry + [i for i in _take(self.inbox, 10**9) if isinstance(i, Inbound)]
        if pending:
            self._handle(pending)
        while not self.publisher.idle and time.monotonic() < deadline and self.link.connected.is_set():
            self.publisher.pump()
            self.link.poll(0.01)
        self.publisher.pump()
        self._forget(self.publisher.confirmed_up_to)
        self.link.stop()
