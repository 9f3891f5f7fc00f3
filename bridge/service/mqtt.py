"""The bridge's MQTT connection: persistent session, acknowledgement after commit, last will.

paho-mqtt directly rather than aiomqtt: aiomqtt 2.x acknowledges a message before the application
sees it (aiomqtt issue #345), and a reading may be acknowledged only once it is committed. paho's
``manual_ack`` lets the pipeline send each PUBACK itself. There is no network thread: the bridge's
one thread calls :meth:`MqttLink.poll` between batches, which reads and dispatches what arrived,
writes what is queued, keeps the connection alive and reconnects with capped exponential backoff.
(With paho's own thread, the two threads handed the GIL back and forth on every packet: the
bridge drained a backlog 35 % slower.) Everything paho reports goes through ``inbox``, so the
pipeline sees messages and connection changes in one order.
"""

import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from queue import SimpleQueue
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.broker_errors import refused, unreachable
from bridge.config import BrokerUrl
from bridge.contract import EVENT_QOS
from bridge.service.messages import Inbound
from bridge.service.presence import BridgeState, Presence

log = logging.getLogger(__name__)
READ_CHUNK = 65536
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
RESUBSCRIBE_MIN_S = 1  # a refused subscription is asked for again after 1, 2, 4 ... 30 s
RESUBSCRIBE_MAX_S = 30
SUBSCRIBE_CHUNK = 100  # filters in one SUBSCRIBE
ROUTE_GRACE_S = 0.2  # after ``offline`` is acknowledged, before disconnecting (see stop)
SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT 5: keep the session (and queued readings) a week


class Token(NamedTuple):
    """What acknowledging a message needs: its link, the link's connection, packet id and QoS."""

    link: "MqttLink"
    connection: int
    mid: int
    qos: int


class Connected(NamedTuple):
    """Control message in the inbox: the connection ``number`` is up."""

    number: int
    session_present: bool


class Disconnected(NamedTuple):
    """Control message in the inbox: the connection of ``link`` went down."""

    reason: str
    link: "MqttLink"


class SubscriptionRefused(NamedTuple):
    """Control message in the inbox: the broker refused ``topic_filter``; ``reason`` says what to do."""

    topic_filter: str
    reason: str
    link: "MqttLink"


def _no_delay(sock: Any) -> None:
    # Nagle's algorithm holds small QoS 1 packets back for tens of milliseconds.
    raw = getattr(sock, "_socket", sock)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        log.debug("could not set TCP_NODELAY on %r", raw)


class _BufferedSocket:
    """A TCP socket read in chunks: paho reads every packet with three or more ``recv`` calls (the
    command byte, each length byte, the rest), each a system call; this one takes what the kernel
    holds at once and hands paho the bytes from memory. ``pending`` tells paho's loop, as for TLS,
    that bytes are waiting here."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock  # the name paho's WebSocket wrapper uses too (see _no_delay)
        self._data = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        if self._at == len(self._data):
            self._data, self._at = self._socket.recv(READ_CHUNK), 0
        chunk = self._data[self._at:self._at + size]
        self._at += len(chunk)
        return chunk

    def pending(self) -> int:
        return len(self._data) - self._at

    def send(self, data: bytes | bytearray) -> int:
        return self._socket.send(data)

    def fileno(self) -> int:
        return self._socket.fileno()

    def setblocking(self, flag: bool) -> None:
        self._socket.setblocking(flag)

    def close(self) -> None:
        self._socket.close()


class _Client(paho.Client):
    """paho's client reading plain TCP through a _BufferedSocket (TLS and WebSockets have buffers)."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket):
            return _BufferedSocket(sock)
        return sock


def _readable(sock: Any) -> bool:
    """Data waits in ``sock`` (or in its TLS or WebSocket layer)."""
    pending = getattr(sock, "pending", None)
    return bool(pending and pending()) or bool(select.select([sock], [], [], 0)[0])


def _published(info: paho.MQTTMessageInfo) -> bool:
    """Whether the broker has acknowledged the message; False once it cannot be any more (paho raises
    then: the connection was lost, as when another instance takes the session over)."""
    try:
        return info.is_published()
    except RuntimeError:
        return False


class MqttLink:
    """One paho client: subscriptions in, events and presence out.

    The bridge's link keeps a persistent session (``clean`` False): what the broker queued while
    the bridge was away is delivered when it returns. A Sparkplug host's link starts clean each
    time, as the specification's host does: the edge nodes' store-and-forward covers the gap.
    """

    def __init__(self, url: BrokerUrl, client_id: str, inbox: "SimpleQueue[Any]",
                 on_confirmed: Callable[[int], None], mqtt_version: str = "3.1.1",
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, presence: Presence | None = None,
                 clean: bool = False, may_connect: Callable[[], bool] = lambda: True) -> None:
        self.url = url
        self.may_connect = may_connect  # False: (re)connecting would take the session from another instance
        self.presence: Presence = presence or BridgeState()
        self.clean = clean
        self.inbox = inbox
        self.topics: list[str] = []
        self.stale: list[str] = []
        self.connection = 0  # number of the current connection; 0 before the first
        self.connected = threading.Event()
        self._next_attempt = 0.0  # monotonic time of the next connection attempt
        self._backoff = 0.0  # the wait before the next attempt after a failure
        self._requested: dict[int, list[str]] = {}  # SUBSCRIBE packet id -> its filters, until SUBACK
        self._granted: set[str] = set()
        self._refused: dict[str, tuple[float, float]] = {}  # filter -> (monotonic time to retry, wait)
        self.refusals = 0  # subscriptions the broker refused, retries included
        self._refusal = ""  # why the broker refused the last CONNECT, until the failure is logged
        self._client_id = client_id
        self.online = False  # ``online`` published on this connection: every subscription granted
        self._v5 = mqtt_version == "5"
        protocol = paho.MQTTv5 if self._v5 else paho.MQTTv311
        self.client = _Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
            clean_session=None if self._v5 else clean, transport=url.transport,
            manual_ack=True,
        )
        if url.transport == "websockets":
            self.client.ws_set_options(path=url.path or "/mqtt")
        if url.tls:
            context = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                context.load_cert_chain(cert_file, key_file)
            self.client.tls_set_context(context)
        if url.username is not None:
            self.client.username_pw_set(url.username, url.password)
        self.client.max_queued_messages_set(0)
        self.client.on_socket_open = lambda _c, _u, sock: _no_delay(sock)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: on_confirmed(mid)
        self.client.on_subscribe = self._on_subscribe

    def start(self, topics: Sequence[str], stale: Sequence[str] = ()) -> None:
        """Set where to connect, what to subscribe to and what a resumed session may still be
        subscribed to that must go (it would deliver readings twice); :meth:`poll` connects."""
        self.topics = list(topics) + ([self.presence.topic] if self.presence.watch else [])
        self.stale = list(stale)
        properties = None
        if self._v5 and not self.clean:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(self.url.host, self.url.port, keepalive=30,
                                  clean_start=self.clean if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                                  properties=properties)

    def poll(self, timeout: float, enough: int = 1) -> None:
        """Do the network I/O that is due, waiting up to ``timeout`` for something to arrive:
        read what came (messages and confirmations go to the inbox and ``on_confirmed``) until
        the socket is drained or the inbox holds ``enough``, write what is queued, send
        keep-alives; while disconnected, reconnect when the backoff allows."""
        client = self.client
        sock = client.socket()
        if sock is None:
            self._reconnect(timeout)
            return
        if self._refused and self.connected.is_set():
            self._resubscribe()
        rc = client.loop(timeout)
        # paho reads at most one packet per message it has in flight per call
        while rc == paho.MQTT_ERR_SUCCESS and self.inbox.qsize() < enough and _readable(sock):
            rc = client.loop(0)
        if rc != paho.MQTT_ERR_SUCCESS:
            was = f"lost the connection to {self.url} ({paho.error_string(rc).rstrip('.').lower()})"
            why, self._refusal = self._refusal or was, ""
            self._failed(why)

    def _reconnect(self, timeout: float) -> None:
        wait = self._next_attempt - time.monotonic()
        if not self.may_connect():
            time.sleep(max(0.0, min(wait, timeout)))
            return
        if wait > 0:
            time.sleep(min(wait, timeout))
            return
        self.presence.connecting()
        self.client.will_set(self.presence.topic, self.presence.offline(), qos=EVENT_QOS, retain=True)
        try:
            self.client.reconnect()  # the CONNACK comes with a later poll
        except OSError as error:
            self._failed(unreachable(error, self.url).text)

    def _failed(self, why: str) -> None:
        self._backoff = min(RECONNECT_MAX_S, self._backoff * 2 or RECONNECT_MIN_S)
        self._next_attempt = time.monotonic() + self._backoff
        log.warning("%s; next attempt in %g s", why, self._backoff)

    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refusal = refused(reason, self.url, self._client_id).text  # logged with the backoff
            return
        self.connection += 1
        self._backoff = 0.0
        _no_delay(client.socket())
        # ``online`` waits for every SUBACK: until then readings could be published to no subscription
        self.online = False
        self._requested.clear()
        self._granted.clear()
        self._refused.clear()
        if flags.session_present:
            for start in range(0, len(self.stale), SUBSCRIBE_CHUNK):
                client.unsubscribe(self.stale[start:start + SUBSCRIBE_CHUNK])
        for start in range(0, len(self.topics), SUBSCRIBE_CHUNK):
            self._subscribe(self.topics[start:start + SUBSCRIBE_CHUNK])
        self.connected.set()
        log.info("MQTT Connected to %s as %s (connection %d, %s)", self.url, self._client_id, self.connection,
                 "session resumed" if flags.session_present else "new session")
        if self.connection > 1 and not flags.session_present and not self.clean:
            log.warning("the broker kept no session for %s: readings published while the bridge "
                        "was away are lost (is the broker's persistence on?)", client._client_id)
        self.inbox.put(Connected(self.connection, bool(flags.session_present)))

    def change_subscriptions(self, subscribe: Sequence[str], unsubscribe: Sequence[str]) -> None:
        """Add and drop topic filters; sent now when connected, and kept for every later connection."""
        gone = set(unsubscribe)
        added = [f for f in dict.fromkeys(subscribe) if f not in self.topics]
        self.topics = [f for f in self.topics if f not in gone] + added
        self._granted -= gone
        for topic_filter in gone:
            self._refused.pop(topic_filter, None)
        if self.connected.is_set():
            if gone:
                self.client.unsubscribe(sorted(gone))
            for start in range(0, len(added), SUBSCRIBE_CHUNK):
                self._subscribe(added[start:start + SUBSCRIBE_CHUNK])

    def _subscribe(self, filters: list[str]) -> bool:
        """Send one SUBSCRIBE (its SUBACK comes with a later poll); False when it could not be sent."""
        rc, mid = self.client.subscribe([(f, EVENT_QOS) for f in filters])
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            return False  # the connection is going down: the reconnect subscribes again
        self._requested[mid] = filters
        return True

    def _resubscribe(self) -> None:
        """Ask again for the refused filters whose wait is over."""
        now = time.monotonic()
        due = [f for f, (at, _) in self._refused.items() if at <= now]
        if due and self._subscribe(due):
            log.info("MQTT subscribing again to %s", ", ".join(due))
            for topic_filter in due:  # until its SUBACK, neither refused nor granted
                self._refused[topic_filter] = (float("inf"), self._refused[topic_filter][1])

    def _on_subscribe(self, client: paho.Client, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        filters = self._requested.pop(mid, [])
        for topic_filter, code in zip(filters, codes):
            if code.is_failure:  # MQTT 3.1.1: 0x80; MQTT 5: any code >= 0x80
                self._refuse(topic_filter, code)
                continue
            self._refused.pop(topic_filter, None)
            self._granted.add(topic_filter)
            if code.value < EVENT_QOS:
                log.warning("the broker granted only QoS %d on %s: its messages are not acknowledged "
                            "after commit and a crash can lose them", code.value, topic_filter)
        if not self.online and self._granted.issuperset(self.topics):
            self.online = True
            client.publish(self.presence.topic, self.presence.online(), qos=EVENT_QOS, retain=True)
            log.info("MQTT subscribed to %s: online", ", ".join(self.topics))

    def _refuse(self, topic_filter: str, code: Any) -> None:
        """Log, count and report a refused subscription, and schedule its retry."""
        if not self._refused:
            # a retained ``online`` (kept by a broker that restarted) must not stand while readings are lost
            self.client.publish(self.presence.topic, self.presence.offline(), qos=EVENT_QOS, retain=True)
        wait = self._refused.get(topic_filter, (0.0, 0.0))[1]
        wait = min(RESUBSCRIBE_MAX_S, wait * 2 or RESUBSCRIBE_MIN_S)
        self._refused[topic_filter] = (time.monotonic() + wait, wait)
        self.refusals += 1
        reason = (f"the broker refused the bridge's subscription to {topic_filter} (SUBACK 0x{code.value:02x} "
                  f"{code.getName()}): no reading on it is received and the bridge stays not online; "
                  f"let the bridge's user read it (broker ACL or limits); next try in {wait:g} s")
        log.error("%s", reason)
        self.inbox.put(SubscriptionRefused(topic_filter, reason, self))

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        self.inbox.put(Disconnected(str(reason), self))

    def _on_message(self, client: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        if self.presence.watch and message.topic == self.presence.topic:
            if message.qos:
                client.ack(message.mid, message.qos)
            if self.online and self.presence.says_offline(bytes(message.payload)):
                log.warning("%s says this bridge is offline: publishing it online again", message.topic)
                client.publish(self.presence.topic, self.presence.online(), qos=EVENT_QOS, retain=True)
            return
        self.inbox.put(Inbound(message.topic, bytes(message.payload), datetime.now(timezone.utc),
                               Token(self, self.connection, message.mid, message.qos),
                               message.mid if message.qos else None, bool(message.dup),
                               bool(message.retain)))

    def ack(self, token: Token) -> None:
        """Acknowledge a committed message, unless it came on an earlier connection.

        After a reconnect the broker redelivers what was not acknowledged, with the same packet
        ids; a PUBACK for an old id on the new connection could acknowledge another message.
        """
        if token.qos and token.connection == self.connection:
            self.client.ack(token.mid, token.qos)

    def publish(self, topic: str, payload: str | bytes, retain: bool, qos: int = EVENT_QOS) -> int | None:
        """Send an event (at QoS 1 unless told); its packet id, or None when not connected."""
        if not self.connected.is_set():
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid if info.rc == paho.MQTT_ERR_SUCCESS else None

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained) and disconnect cleanly."""
        self.online = False  # its own ``offline`` coming back is not a reason to republish ``online``
        if self.connected.is_set():
            info = self.client.publish(self.presence.topic, self.presence.offline(), qos=EVENT_QOS, retain=True)
            deadline = time.monotonic() + timeout
            while not _published(info) and self.connected.is_set() and time.monotonic() < deadline:
                self.poll(0.05)
            if not _published(info):
                log.warning("could not publish the offline state")
            # The embedded broker (amqtt) acknowledges a message before it routes it, and forgets
            # what it has not routed when its client disconnects: let it route ``offline`` first.
            settle = time.monotonic() + ROUTE_GRACE_S
            while self.connected.is_set() and time.monotonic() < settle:
                self.poll(ROUTE_GRACE_S / 5)
        self.client.disconnect()
