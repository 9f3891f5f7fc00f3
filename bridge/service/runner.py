"""The bridge's main loop: batches from MQTT through the pipeline, then acknowledge and publish.

Order of a batch: evaluate and commit (pipeline), then PUBACK the readings, then hand the events
to the publisher, so a reading is acknowledged only once stored and an event is sent only once
the data it describes is committed. A message that cannot be processed is rejected alone
(bridge.service.isolation); while the database is unreachable the batch is retried with backoff,
its readings unacknowledged meanwhile.
"""

import gc
import logging
import select
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from queue import Empty, SimpleQueue
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError

from bridge import version
from bridge.config import KEPT, CharacteristicConfig, Settings
from bridge.contract import OFFLINE, ONLINE, InstanceState, instance_topic
from bridge.ingest import iso_utc
from bridge.service.messages import Inbound
from bridge.service.metrics import BridgeMetrics
from bridge.service.mqtt import Connected, Disconnected, MqttLink, SubscriptionRefused
from bridge.service.pipeline import Pipeline
from bridge.service.presence import HostState
from bridge.service.publisher import Publisher
from bridge.service.roles import UserRoles
from bridge.sparkplug.payload import rebirth_request
from bridge.sparkplug.topics import node_topic
from bridge.store.failures import DatabaseUnusable, open_engine, permanent, prepare_waiting, shown
from bridge.store.lease import Lease, LeaseLost
from bridge.store.queries import create_tables

log = logging.getLogger(__name__)
FORGET_EVERY_S = 1.0
TICK_S = 0.5  # how often missed samples and due status events are looked for
RETRY_MAX_S = 10.0
STOP_DRAIN_S = 5.0
STEP_DOWN_S = 1.0  # the longest wait for ``offline`` to be acknowledged when the lease is lost
IDLE_S = 0.05  # the longest wait for the network while nothing has arrived
SLOW_BATCH_S = 1.0  # a batch that takes longer to evaluate and commit is logged
SHOWN_FILTERS = 10  # subscriptions named in the start-up line; the rest are counted


def _take(inbox: "SimpleQueue[Any]", size: int, weight: Callable[[Any], int] = lambda _: 1) -> tuple[list[Any], int]:
    """Items that are in the inbox now, up to a total ``weight`` of ``size``; and their weight."""
    items: list[Any] = []
    total = 0
    while total < size:
        try:
            item = inbox.get_nowait()
        except Empty:
            break
        items.append(item)
        total += weight(item)
    return items, total


class Bridge:
    """The running bridge: one MQTT link, one pipeline, one publisher."""

    def __init__(self, settings: Settings, configs: list[CharacteristicConfig], lease: Lease | None = None,
                 partition: tuple[int, int] = (0, 1)) -> None:
        self.settings = settings
        self.lease = lease  # held by this instance while it runs (bridge.service.failover); None: no standby
        self.partition = partition
        self.inbox: SimpleQueue[Any] = SimpleQueue()
        roles = UserRoles(settings.users) if settings.users is not None else None
        self.pipeline = Pipeline(open_engine(settings.db_url), settings.client_id, configs,
                                 settings.max_payload, settings.capability_interval,
                                 settings.sparkplug_reorder_timeout, str(settings.config_path),
                                 roles.role if roles is not None else None,
                                 partition if partition[1] > 1 else None, settings.redelivered_ids == KEPT)
        if lease is not None:
            lease.arm(self.pipeline.engine)
        self.link = self._link(settings.client_id, self._confirmed, may_connect=self._may_connect)
        self.host_link: MqttLink | None = None  # the Sparkplug host's, when a characteristic has a metric
        self.publisher = Publisher(self.link.publish, self.pipeline.pending_after)
        # The publisher bounds what awaits a PUBACK; paho's own window, when set, scans every
        # message in flight on each PUBACK (O(window) per event), so it is left unlimited.
        self.link.client.max_inflight_messages_set(0)
        self.ready = threading.Event()
        self.metrics: BridgeMetrics | None = None
        if settings.metrics_port is not None:
            self.metrics = BridgeMetrics(self.pipeline, self.publisher, self.link.connected, self.ready)
            self.pipeline.listener = self.metrics
        self._published_from = 0  # events after this outbox seq are this run's to publish
        self._since = iso_utc(datetime.now(timezone.utc))  # when this instance began to serve

    def _link(self, client_id: str, on_confirmed: Callable[[int], None], **options: Any) -> MqttLink:
        """A link to the broker of the settings, with their TLS files."""
        settings = self.settings
        ca, cert, key = (str(p) if p else None for p in (settings.ca_file, settings.cert_file, settings.key_file))
        return MqttLink(settings.broker, client_id, self.inbox, on_confirmed, settings.mqtt_version, ca, cert, key,
                        **options)

    def _may_connect(self) -> bool:
        """Whether this instance may connect under the client id: its lease is renewed (or there is
        none). Kicked off by another instance's connection once it is not, it does not fight back."""
        lease = self.lease
        return lease is None or not (lease.lost.is_set() or lease.expired_here())

    def _confirmed(self, mid: int) -> None:
        self.publisher.confirmations.put(mid)

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, then finish the work in hand and go offline; the database
        connections are closed on the way out."""
        try:
            self._run(stop)
        finally:
            self.pipeline.engine.dispose()

    def _run(self, stop: threading.Event) -> None:
        if not prepare_waiting(self.pipeline.engine, create_tables, stop):
            return
        try:
            pending = self.pipeline.start()
        except DBAPIError as error:
            raise DatabaseUnusable(permanent(self.pipeline.engine, error) or f"database {shown(self.settings.db_url)}: "
                                   f"{' '.join(str(error.orig or error).split())}") from error
        self.publisher.add(pending)
        self._published_from = pending[0].seq - 1 if pending else self.pipeline.next_seq - 1
        self._log_start()
        # The characteristics live as long as the process: out of the collector's sight, a full
        # collection no longer walks them (over 100 ms with 10,000 of them, a latency spike).
        # Collect first, or the start-up's garbage would be frozen with them; and unfreeze what another
        # bridge of this process froze at its start, or a partition handed over would never be freed.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.link.start(self.pipeline.topics, self.pipeline.stale_filters)
        if self.pipeline.sparkplug is not None:
            # a connection of its own, with a clean session, as the Sparkplug host (mqtt.MqttLink)
            self.host_link = self._link(f"{self.settings.client_id}:sparkplug", lambda _mid: None,
                                        presence=HostState(self.settings.sparkplug_host_id), clean=True)
            self.host_link.client.max_inflight_messages_set(0)
            self.host_link.start(self.pipeline.sparkplug_topics)
        self.ready.set()
        retry: list[Inbound] = []
        backoff = 0.0
        forgotten = 0
        last_forget = last_tick = time.monotonic()
        while not stop.is_set():
            if self.lease is not None and self.lease.lost.is_set():
                self._step_down()
                return
            items = retry or self._collect()
            messages = [i for i in items if isinstance(i, Inbound)]
            for item in items:
                self._control(item)
            if messages:
                retry = self._handle(messages)
                if retry:
                    backoff = min(RETRY_MAX_S, backoff * 2 or 0.1)
                    self._pause(stop, backoff)
                    continue
                backoff = 0.0
            self._rebirths()
            if time.monotonic() - last_tick >= TICK_S:
                self._tick()
                last_tick = time.monotonic()
            self.publisher.pump()
            up_to = self.publisher.confirmed_up_to
            if up_to > forgotten and time.monotonic() - last_forget > FORGET_EVERY_S:
                self._forget(up_to)
                forgotten, last_forget = up_to, time.monotonic()
        self._finish(retry)

    def _control(self, item: Any) -> None:
        """Act on a link's report (connection changes are logged by the link): a refused
        subscription is stored and published, a lost Sparkplug connection makes its characteristics stale,
        a new connection of the bridge's own link says which instance serves it."""
        try:
            if isinstance(item, Connected) and self.lease is not None:
                self.link.publish(instance_topic(self.settings.client_id), self._instance_state(ONLINE), retain=True)
            elif isinstance(item, SubscriptionRefused):
                self.publisher.add(self.pipeline.record_error(item.topic_filter, item.reason))
            elif isinstance(item, Disconnected) and item.link is self.host_link and self.pipeline.sparkplug:
                lost = self.pipeline.sparkplug.connection_lost(f"the Sparkplug connection was lost ({item.reason})")
                self.publisher.add(self.pipeline.record_events(lost))
        except Exception:
            log.exception("could not record %r", item)

    def _instance_state(self, state: Literal["online", "offline"]) -> str:
        """The payload of spc/bridge/state/<client id>."""
        lease = self.lease
        assert lease is not None
        return InstanceState(state=state, instance=lease.instance, client_id=self.settings.client_id,
                             partition=self.partition[0], partitions=self.partition[1], epoch=lease.epoch,
                             since=self._since).model_dump_json()

    def _step_down(self) -> None:
        """Stop serving at once, the lease lost: nothing more is committed or acknowledged (what is
        unacknowledged comes again to the instance that took over), and the link goes ``offline``
        unless that instance's connection has already closed it."""
        log.warning("instance %s stops serving %s: another instance serves it now", self.lease and self.lease.instance,
                    self.settings.client_id)
        if self.host_link is not None:
            self.host_link.stop(STEP_DOWN_S)
        self.link.stop(STEP_DOWN_S)

    def _tick(self) -> None:
        """Record the missed samples and the status events that are due, and publish them."""
        try:
            self.publisher.add(self.pipeline.tick())
        except Exception as error:  # the database is away: the next tick tries again
            log.warning("could not record missed samples and status events (%s): tried again in %g s",
                        " ".join(str(error).split())[:300], TICK_S)

    def _rebirths(self) -> None:
        """Ask the edge nodes for the rebirths the Sparkplug host needs (NCMD Node Control/Rebirth)."""
        sparkplug, link = self.pipeline.sparkplug, self.host_link
        if sparkplug is None or link is None:
            return
        for node in sparkplug.take_rebirths() + sparkplug.due():
            log.info("asking Sparkplug edge node %s for a rebirth", node)
            link.publish(node_topic(node.group_id, "NCMD", node.edge_node_id),
                         rebirth_request(int(time.time() * 1000)), retain=False, qos=0)

    def _poll(self, timeout: float, enough: int) -> None:
        """Network I/O of the links, waiting up to ``timeout`` for either to bring something."""
        if self.host_link is None:
            self.link.poll(timeout, enough)
            return
        clients = (self.link.client, self.host_link.client)
        sockets = [c.socket() for c in clients]
        # one wait for both sockets, unless either has bytes buffered (TLS, _BufferedSocket) or to write
        if timeout and all(sockets) and not any(c.want_write() for c in clients) and not any(
                getattr(sock, "pending", lambda: 0)() for sock in sockets):
            select.select(sockets, [], [], timeout)
            timeout = 0.0
        self.link.poll(timeout, enough)
        self.host_link.poll(0.0, enough)

    def _weight(self, item: Any) -> int:
        """The readings a message is expected to carry (a vendor JSON or Sparkplug message, many)."""
        return self.pipeline.readings_per_message(item.topic) if isinstance(item, Inbound) else 1

    def _collect(self) -> list[Any]:
        """The next batch: what the network has brought, up to ``--batch-size`` readings, waiting up
        to IDLE_S for the first and ``--batch-ms`` for more."""
        size, wait_s = self.settings.batch_size, self.settings.batch_ms / 1000
        self._poll(0.0 if self.inbox.qsize() else IDLE_S, size)
        items, total = _take(self.inbox, size, self._weight)
        if items and wait_s:
            deadline = time.monotonic() + wait_s
            while total < size and (left := deadline - time.monotonic()) > 0:
                self._poll(left, size - total)
                more, weight = _take(self.inbox, size - total, self._weight)
                items += more
                total += weight
        return items

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait before retrying a batch, keeping the connection alive meanwhile."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._poll(min(left, IDLE_S), 10**9)

    def _handle(self, messages: list[Inbound]) -> list[Inbound]:
        """Process a batch: acknowledge what is committed or rejected, publish its events; return
        the messages to retry (the database is unreachable)."""
        started = time.monotonic()
        done = self.pipeline.process(messages)
        took = time.monotonic() - started
        if took > SLOW_BATCH_S:
            log.warning("a batch of %d messages took %.1f s to evaluate and commit (over %g s): is the database "
                        "slow or overloaded?", len(messages), took, SLOW_BATCH_S,
                        extra={"batch_size": len(messages), "duration_s": round(took, 3)})
        for message in done.handled:
            message.token.link.ack(message.token)
        self.publisher.add(done.events)
        for subscribe, unsubscribe in self.pipeline.subscription_changes:  # asked by commands
            self.link.change_subscriptions(subscribe, unsubscribe)
        self.pipeline.subscription_changes.clear()
        return done.retry

    def _forget(self, up_to: int) -> None:
        try:
            self.pipeline.forget_confirmed(up_to)
        except LeaseLost:
            pass  # fenced: the step-down that follows says why, and the new instance deletes them
        except Exception:
            log.exception("could not delete confirmed outbox events")

    def _finish(self, retry: list[Inbound]) -> None:
        """Graceful stop: process what has arrived, publish what is committed, go offline."""
        deadline = time.monotonic() + STOP_DRAIN_S
        self._poll(0.0, 10**9)
        pending = retry + [i for i in _take(self.inbox, 10**9)[0] if isinstance(i, Inbound)]
        if pending:
            self._handle(pending)
        while not self.publisher.idle and time.monotonic() < deadline and self.link.connected.is_set():
            self.publisher.pump()
            self.link.poll(0.01)
        self.publisher.pump()
        self._forget(self.publisher.confirmed_up_to)
        if self.host_link is not None:
            self.host_link.stop()
        if self.lease is not None and self.link.connected.is_set():
            self.link.publish(instance_topic(self.settings.client_id), self._instance_state(OFFLINE), retain=True)
        self.link.stop()
        self._log_stop()

    def _log_start(self) -> None:
        """One line: version, broker, database, characteristics by chart, subscriptions."""
        charts = Counter(ch.spec.chart for ch in self.pipeline.by_id.values())
        topics = self.pipeline.topics
        more = f" and {len(topics) - SHOWN_FILTERS} more" if len(topics) > SHOWN_FILTERS else ""
        log.info("spc-bridge %s starting: broker %s as %s, database %s, %d characteristics (%s), subscribing to %s%s",
                 version(), self.settings.broker, self.settings.client_id, shown(self.settings.db_url),
                 len(self.pipeline.by_id), ", ".join(f"{chart} {n}" for chart, n in sorted(charts.items())),
                 ", ".join(topics[:SHOWN_FILTERS]), more)

    def _log_stop(self) -> None:
        """One line: what this run stored, dropped, rejected and published."""
        pipeline = self.pipeline
        published = max(0, self.publisher.confirmed_up_to - self._published_from)
        log.info("stopped: %d readings stored, %d duplicates dropped, %d rejects, %d events published",
                 pipeline.stored, pipeline.duplicates, pipeline.rejected, published,
                 extra={"stored": pipeline.stored, "duplicates": pipeline.duplicates,
                        "rejects": pipeline.rejected, "published": published})
