"""What the embedded broker queued for a persistent session while it was away reaches it whole and in order when
it comes back, also beyond the 65,535 packet ids a session has (sent 1,000 in flight at a time), with what is
published meanwhile behind it, and with its own publications routed while the queue drains (amqtt held them
back until the end)."""

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import EmbeddedBrokerThread, MqttProbe
from tests.credentials import password

QUEUED = 70_000
TOPIC = "line/queue/value"
WAIT = 120.0


def _subscriber(broker: EmbeddedBrokerThread, received: list[bytes]) -> mqtt.Client:
    """The persistent session under test, connected and subscribed to TOPIC (again, when it resumes)."""
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="admin:queue-test", clean_session=False,
                         protocol=mqtt.MQTTv311)
    client.username_pw_set("admin", password("admin"))
    client.on_message = lambda _c, _u, message: received.append(message.payload)
    client.on_connect = lambda c, _u, _f, _reason, _p: c.subscribe(TOPIC, 1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    assert subscribed.wait(WAIT), "the subscriber did not connect and subscribe"
    return client


def test_a_queue_beyond_the_packet_ids_arrives_whole_and_in_order(embedded_broker: EmbeddedBrokerThread) -> None:
    """70,000 QoS 1 messages queued for an away session, then it reconnects; a message published while they
    flow, and the session's own publication, come through too: the queue in order, then the new message."""
    received: list[bytes] = []
    subscriber = _subscriber(embedded_broker, received)
    subscriber.disconnect()
    subscriber.loop_stop()
    with MqttProbe(embedded_broker, user="admin") as publisher:
        infos: list[mqtt.MQTTMessageInfo] = []
        for start in range(0, QUEUED, 10_000):  # paho holds at most 65,535 unacknowledged messages itself
            infos += [publisher.client.publish(TOPIC, str(n).encode(), 1) for n in range(start, start + 10_000)]
            infos[-1].wait_for_publish(WAIT)
        assert all(info.is_published() for info in infos)
        with MqttProbe(embedded_broker, user="admin") as watcher:
            watcher.subscribe("line/queue/own")
            subscriber = _subscriber(embedded_broker, received)
            try:
                deadline = time.monotonic() + WAIT
                while len(received) < 1000 and time.monotonic() < deadline:
                    time.sleep(0.01)
                publisher.publish(TOPIC, b"new")
                subscriber.publish("line/queue/own", b"mine", 1)
                assert watcher.wait_for("line/queue/own", 1, timeout=10), "the session's own publication"
                assert len(received) < QUEUED, "the drain ended before the session's publication was routed"
                while len(received) < QUEUED + 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.3)  # anything more would have come by now
            finally:
                subscriber.disconnect()
                subscriber.loop_stop()
    assert received == [str(n).encode() for n in range(QUEUED)] + [b"new"]

