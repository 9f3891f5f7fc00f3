"""Both brokers with real paho clients on TCP and WebSockets, Mosquitto's persistence, and amqtt's known defects."""

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest

from broker.embedded import EmbeddedBroker, PortInUseError
from tests.brokers import (
    HOST,
    REPO_ROOT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    BrokerHandle,
    EmbeddedBrokerThread,
    MosquittoProcess,
    MqttProbe,
    free_port,
    wait_for_ports,
)

# A message that should arrive has 5 s; one that must not arrive is given this long to show up anyway.
QUIET = 1.0


def unique_topic(name: str) -> str:
    """A topic no other test uses."""
    return f"test/{uuid.uuid4().hex[:8]}/{name}"


def test_qos1_message_reaches_tcp_and_websocket_subscribers(broker: BrokerHandle) -> None:
    topic = unique_topic("sample")
    with MqttProbe(broker, "tcp") as tcp, MqttProbe(broker, "websockets") as ws, MqttProbe(broker) as publisher:
        tcp.subscribe(topic, qos=1)
        ws.subscribe(topic, qos=1)
        publisher.publish(topic, b'{"value": 10.5}', qos=1)
        for subscriber in (tcp, ws):
            [message] = subscriber.wait_for(topic)
            assert (message.payload, message.qos, message.retain) == (b'{"value": 10.5}', 1, False)


def test_retained_message_reaches_late_subscribers(broker: BrokerHandle) -> None:
    topic = unique_topic("limits")
    with MqttProbe(broker) as publisher:
        publisher.publish(topic, b'{"ucl": 74.0143}', qos=1, retain=True)
    for transport in ("tcp", "websockets"):
        with MqttProbe(broker, transport) as late:
            late.subscribe(topic, qos=1)
            messages = late.wait_for(topic)
            assert messages, f"no retained message on {transport}"
            assert all(m.payload == b'{"ucl": 74.0143}' and m.retain for m in messages)


def test_persistent_session_receives_what_was_published_while_it_was_away(broker: BrokerHandle) -> None:
    """Queued for the offline session, it arrives at QoS 1 and without the retain flag (MQTT-3.3.1-9: RETAIN is
    0 on a message sent because it matches an established subscription; amqtt set it, fixed in
    broker/amqtt_access.py)."""
    topic = unique_topic("queued")
    client_id = f"admin:persistent-{uuid.uuid4().hex[:8]}"
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        subscriber.subscribe(topic, qos=1)
    with MqttProbe(broker) as publisher:
        publisher.publish(topic, b"while away", qos=1)
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        [message] = subscriber.wait_for(topic)
        assert (message.payload, message.qos, message.retain) == (b"while away", 1, False)


# amqtt 0.12.1 forgot a QoS 1 message in flight to a client when the client disconnected, and when its PUBACK
# took more than 5 s (amqtt #401); broker/amqtt_fixes.py keeps it until the client acknowledges it.
LONGER_THAN_AMQTT_PUBACK_WAIT = 6.0


@pytest.mark.parametrize("unacknowledged_for", [0.0, LONGER_THAN_AMQTT_PUBACK_WAIT], ids=["at-once", "after-6s"])
def test_unacknowledged_qos1_message_is_redelivered_after_reconnect(
    broker: BrokerHandle, unacknowledged_for: float
) -> None:
    topic = unique_topic("inflight")
    client_id = f"admin:inflight-{uuid.uuid4().hex[:8]}"
    with MqttProbe(broker, client_id=client_id, clean_session=False, manual_ack=True) as subscriber:
        subscriber.subscribe(topic, qos=1)
        with MqttProbe(broker) as publisher:
            publisher.publish(topic, b"never acknowledged", qos=1)
        assert subscriber.wait_for(topic), "the message did not arrive the first time"
        time.sleep(unacknowledged_for)  # a consumer still busy with it (e.g. a slow commit), then gone
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        [message] = subscriber.wait_for(topic)
        assert (message.payload, message.qos, message.dup) == (b"never acknowledged", 1, True)


def test_message_queued_for_an_offline_session_is_redelivered_if_unacknowledged(broker: BrokerHandle) -> None:
    # Queued while the subscriber was away, delivered when it came back, and in flight when it left again.
    topic = unique_topic("queued-inflight")
    client_id = f"admin:queued-{uuid.uuid4().hex[:8]}"
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        subscriber.subscribe(topic, qos=1)
    with MqttProbe(broker) as publisher:
        publisher.publish(topic, b"while away", qos=1)
    with MqttProbe(broker, client_id=client_id, clean_session=False, manual_ack=True) as subscriber:
        assert subscriber.wait_for(topic), "the queued message did not arrive"
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        [message] = subscriber.wait_for(topic)
        assert (message.payload, message.qos, message.dup) == (b"while away", 1, True)


def test_puback_arriving_after_6_s_loses_nothing_and_still_counts(broker: BrokerHandle) -> None:
    topic = unique_topic("late-ack")
    client_id = f"admin:late-ack-{uuid.uuid4().hex[:8]}"
    with MqttProbe(broker, client_id=client_id, clean_session=False, manual_ack=True) as subscriber, \
            MqttProbe(broker) as publisher:
        subscriber.subscribe(topic, qos=1)
        publisher.publish(topic, b"acknowledged late", qos=1)
        [first] = subscriber.wait_for(topic)
        time.sleep(LONGER_THAN_AMQTT_PUBACK_WAIT)
        assert subscriber.client.ack(first.mid, first.qos) == mqtt.MQTT_ERR_SUCCESS
        # The session goes on delivering after amqtt's wait ran out; this one is acknowledged at once.
        publisher.publish(topic, b"acknowledged at once", qos=1)
        [_, second] = subscriber.wait_for(topic, count=2)
        assert second.payload == b"acknowledged at once"
        assert subscriber.client.ack(second.mid, second.qos) == mqtt.MQTT_ERR_SUCCESS
    # Both PUBACKs went before the DISCONNECT: the late one counted too (amqtt ignored it), nothing is resent.
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        assert subscriber.wait_for(topic, timeout=QUIET) == []


def closed_by_peer(client: mqtt.Client, timeout: float) -> bool:
    """Whether the broker closes the TCP connection of `client` (its network loop stopped) within `timeout` s."""
    sock = client.socket()
    if not isinstance(sock, socket.socket):
        return sock is None  # paho dropped it: closed
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def test_client_back_before_the_broker_noticed_it_was_gone_gets_its_messages(broker: BrokerHandle) -> None:
    # A power cut or a dropped NAT entry: the client reconnects while the broker still holds its old connection
    # (a take-over). amqtt then marked the session offline once the old connection was closed, so live messages
    # were queued for a later connection instead of delivered; broker/embedded.py closes the old one first.
    topic = unique_topic("takeover")
    client_id = f"admin:takeover-{uuid.uuid4().hex[:8]}"
    with MqttProbe(broker, client_id=client_id, clean_session=False, manual_ack=True) as old:
        old.subscribe(topic, qos=1)
        with MqttProbe(broker) as publisher:
            publisher.publish(topic, b"in flight", qos=1)
            assert old.wait_for(topic), "the message did not arrive the first time"
            old.client.loop_stop()  # silent from now on, socket left open: no PUBACK, no DISCONNECT
            with MqttProbe(broker, client_id=client_id, clean_session=False) as new:
                [first] = new.wait_for(topic)
                assert (first.payload, first.dup) == (b"in flight", True)
                assert closed_by_peer(old.client, old.timeout), "the old connection was left open"
                time.sleep(QUIET)  # amqtt marked the session offline just after closing the old connection
                publisher.publish(topic, b"live", qos=1)
                assert [m.payload for m in new.wait_for(topic, count=2)] == [b"in flight", b"live"]


def test_retained_message_goes_only_to_subscribers_of_its_topic(broker: BrokerHandle) -> None:
    # amqtt sent a connecting client the retained messages of every client's subscriptions (broker/amqtt_access.py).
    topic = unique_topic("secret")
    with MqttProbe(broker) as owner, MqttProbe(broker) as publisher:
        owner.subscribe(topic, qos=1)
        publisher.publish(topic, b"not for everyone", qos=1, retain=True)
        with MqttProbe(broker) as stranger:
            stranger.subscribe(unique_topic("other"), qos=1)
            assert stranger.wait_for(topic, timeout=QUIET) == []


def test_retained_message_is_sent_for_a_new_subscription_only(broker: BrokerHandle) -> None:
    # MQTT-3.3.1-6: once per new subscription. amqtt also sent them on every connect, so a persistent session
    # got them again each time it came back, and a new subscriber could get them twice (broker/amqtt_access.py).
    topic = unique_topic("limits")
    client_id = f"admin:retained-{uuid.uuid4().hex[:8]}"
    with MqttProbe(broker) as publisher:
        publisher.publish(topic, b"current", qos=1, retain=True)
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        subscriber.subscribe(topic, qos=1)
        assert subscriber.wait_for(topic)
        time.sleep(QUIET)
        assert [m.payload for m in subscriber.received(topic)] == [b"current"]
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        assert subscriber.wait_for(topic, timeout=QUIET) == []


def test_websocket_client_outlives_the_websocket_ping_interval(embedded_broker: EmbeddedBrokerThread) -> None:
    # websockets pings every 20 s by default and paho's unmasked pong made amqtt drop the client then.
    topic = unique_topic("ping")
    with MqttProbe(embedded_broker, "websockets") as ws, MqttProbe(embedded_broker) as publisher:
        ws.subscribe(topic, qos=1)
        assert not ws.disconnected.wait(22), "the WebSocket client was disconnected"
        publisher.publish(topic, b"still here", qos=1)
        assert ws.wait_for(topic)


@pytest.mark.parametrize("busy", ["port", "ws_port"])
def test_embedded_broker_reports_a_port_in_use_in_one_line(busy: str, caplog: pytest.LogCaptureFixture) -> None:
    ports = {"port": free_port(), "ws_port": free_port()}
    with socket.socket() as squatter:
        squatter.bind((HOST, ports[busy]))
        squatter.listen()
        with pytest.raises(PortInUseError) as caught:
            asyncio.run(EmbeddedBroker(HOST, ports["port"], ports["ws_port"]).start())
    message = str(caught.value)
    assert "\n" not in message
    assert str(ports[busy]) in message and "in use" in message
    assert caught.value.port == ports[busy]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []  # no amqtt traceback

    async def start_and_stop() -> None:
        async with EmbeddedBroker(HOST, ports["port"], ports["ws_port"]):
            pass

    asyncio.run(start_and_stop())  # the listener that did open before the failure was released


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_broker_stops_cleanly_on_signal(signum: signal.Signals) -> None:
    port, ws_port = free_port(), free_port()
    code = f"from broker.embedded import run_broker; run_broker({HOST!r}, {port}, {ws_port})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stderr=subprocess.PIPE)
    try:
        wait_for_ports(HOST, (port, ws_port), START_TIMEOUT, lambda: proc.poll() is None)
        handle = SimpleNamespace(kind="embedded", host=HOST, port=port, ws_port=ws_port)
        with MqttProbe(handle, "websockets", user=None) as client:
            proc.send_signal(signum)
            assert proc.wait(STOP_TIMEOUT) == 0
            assert client.disconnected.wait(STOP_TIMEOUT)
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()


def test_mosquitto_restart_keeps_retained_messages(mosquitto: MosquittoProcess) -> None:
    topic = unique_topic("limits")
    with MqttProbe(mosquitto) as publisher:
        publisher.publish(topic, b"kept", qos=1, retain=True)
    first_pid = mosquitto.pid
    mosquitto.stop()
    assert mosquitto.pid is None
    mosquitto.start()
    assert mosquitto.pid not in (None, first_pid)
    for transport in ("tcp", "websockets"):
        with MqttProbe(mosquitto, transport) as late:
            late.subscribe(topic, qos=1)
            [message] = late.wait_for(topic)
            assert (message.payload, message.retain) == (b"kept", True)
