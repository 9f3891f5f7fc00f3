"""The bridge's MQTT connection: persistent session, acknowledgement after commit, last will.

paho-mqtt directly rather than aiomqtt: aiomqtt 2.x acknowledges a message before the application
sees it (aiomqtt issue #345), and a reading may be acknowledged only once it is committed. paho's
``manual_ack`` lets the pipeline send each PUBACK itself. paho's network thread does the I/O and
reconnects with capped exponential backoff; everything it reports goes through ``inbox`` so that
the pipeline thread sees messages and connection changes in one order.
"""

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from queue import SimpleQueue
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.config import BrokerUrl
from bridge.contract import EVENT_QOS, OFFLINE, ONLINE, STATE_TOPIC
from bridge.service.pipeline import Inbound

log = logging.getLogger(__name__)
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT 5: keep the session (and queued readings) a week


class Token(NamedTuple):
    """What acknowledging a message needs: its connection, packet id and QoS."""

    connection: int
    mid: int
    qos: int


class Connected(NamedTuple):
    """Control message in the inbox: the connection ``number`` is up."""

    number: int
    session_present: bool


class Disconnected(NamedTuple):
    """Control message in the inbox: the connection went down."""

    reason: str


def _no_delay(sock: Any) -> None:
    # Nagle's algorithm holds small QoS 1 packets back for tens of milliseconds.
    raw = getattr(sock, "_socket", sock)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        log.debug("could not set TCP_NODELAY on %r", raw)


class MqttLink:
    """One paho client: ingest subscriptions in, events and state out."""

    def __init__(self, url: BrokerUrl, client_id: str, inbox: "SimpleQueue[Any]",
                 on_confirmed: Callable[[int], None], mqtt_version: str = "3.1.1",
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        self.url = url
        self.inbox = inbox
        self.topics: list[str] = []
        self.connection = 0  # number of the current connection; 0 before the first
        self.connected = threading.Event()
        self._v5 = mqtt_version == "5"
        protocol = paho.MQTTv5 if self._v5 else paho.MQTTv311
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
            clean_session=None if self._v5 else False, transport=url.transport,
            manual_ack=True, reconnect_on_failure=True,
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
        self.client.will_set(STATE_TOPIC, OFFLINE, qos=EVENT_QOS, retain=True)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.max_queued_messages_set(0)
        self.client.on_socket_open = lambda _c, _u, sock: _no_delay(sock)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: on_confirmed(mid)

    def start(self, topics: Sequence[str]) -> None:
        """Connect in the background (retrying until the broker answers) and subscribe."""
        self.topics = list(topics)
        properties = None
        if self._v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(self.url.host, self.url.port, keepalive=30,
                                  clean_start=False if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                                  properties=properties)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self.connection += 1
        _no_delay(client.socket())
        client.publish(STATE_TOPIC, ONLINE, qos=EVENT_QOS, retain=True)
        for start in range(0, len(self.topics), 100):
            client.subscribe([(t, 1) for t in self.topics[start:start + 100]])
        self.connected.set()
        if self.connection > 1 and not flags.session_present:
            log.warning("the broker kept no session for %s: readings published while the bridge "
                        "was away are lost (is the broker's persistence on?)", client._client_id)
        self.inbox.put(Connected(self.connection, bool(flags.session_present)))

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        self.inbox.put(Disconnected(str(reason)))

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        self.inbox.put(Inbound(message.topic, bytes(message.payload), datetime.now(timezone.utc),
                               Token(self.connection, message.mid, message.qos),
                               message.mid if message.qos else None, bool(message.dup)))

    def ack(self, token: Token) -> None:
        """Acknowledge a committed message, unless it came on an earlier connection.

        After a reconnect the broker redelivers what was not acknowledged, with the same packet
        ids; a PUBACK for an old id on the new connection could acknowledge another message.
        """
        if token.qos and token.connection == self.connection:
            self.client.ack(token.mid, token.qos)

    def publish(self, topic: str, payload: str, retain: bool) -> int | None:
        """Send an event at QoS 1; its packet id, or None when not connected."""
        if not self.connected.is_set():
            return None
        info = self.client.publish(topic, payload, qos=EVENT_QOS, retain=retain)
        return info.mid if info.rc == paho.MQTT_ERR_SUCCESS else None

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), disconnect cleanly and stop the network thread."""
        if self.connected.is_set():
            info = self.client.publish(STATE_TOPIC, OFFLINE, qos=EVENT_QOS, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("could not publish the offline state")
        self.client.disconnect()
        self.client.loop_stop()
