"""Both brokers with real paho clients on TCP and WebSockets, Mosquitto's persistence, and amqtt's known defects."""

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import uuid
from types import SimpleNamespace

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


def xfail_on_amqtt(request: pytest.FixtureRequest, broker: BrokerHandle, reason: str) -> None:
    """Mark the running test as an expected failure on the embedded broker (strict: a fix upstream shows up)."""
    if broker.kind == "embedded":
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


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
    topic = unique_topic("queued")
    client_id = f"persistent-{uuid.uuid4().hex[:8]}"
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        subscriber.subscribe(topic, qos=1)
    with MqttProbe(broker) as publisher:
        publisher.publish(topic, b"while away", qos=1)
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        [message] = subscriber.wait_for(topic)
        assert (message.payload, message.qos) == (b"while away", 1)


def test_unacknowledged_qos1_message_is_redelivered_after_reconnect(
    broker: BrokerHandle, request: pytest.FixtureRequest
) -> None:
    xfail_on_amqtt(request, broker, "amqtt #401: in-flight QoS 1 messages are dropped when the client disconnects")
    topic = unique_topic("inflight")
    client_id = f"inflight-{uuid.uuid4().hex[:8]}"
    with MqttProbe(broker, client_id=client_id, clean_session=False, manual_ack=True) as subscriber:
        subscriber.subscribe(topic, qos=1)
        with MqttProbe(broker) as publisher:
            publisher.publish(topic, b"never acknowledged", qos=1)
        assert subscriber.wait_for(topic), "the message did not arrive the first time"
    with MqttProbe(broker, client_id=client_id, clean_session=False) as subscriber:
        [message] = subscriber.wait_for(topic)
        assert (message.payload, message.dup) == (b"never acknowledged", True)


def test_retained_message_goes_only_to_subscribers_of_its_topic(
    broker: BrokerHandle, request: pytest.FixtureRequest
) -> None:
    xfail_on_amqtt(request, broker, "amqtt sends a connecting client the retained messages of every client's subscriptions")
    topic = unique_topic("secret")
    with MqttProbe(broker) as owner, MqttProbe(broker) as publisher:
        owner.subscribe(topic, qos=1)
        publisher.publish(topic, b"not for everyone", qos=1, retain=True)
        with MqttProbe(broker) as stranger:
            stranger.subscribe(unique_topic("other"), qos=1)
            assert stranger.wait_for(topic, timeout=QUIET) == []


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
            asyncio.run(EmbeddedBroker(HOST, **ports).start())
    message = str(caught.value)
    assert "\n" not in message
    assert str(ports[busy]) in message and "in use" in message
    assert caught.value.port == ports[busy]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []  # no amqtt traceback

    async def start_and_stop() -> None:
        async with EmbeddedBroker(HOST, **ports):
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
        with MqttProbe(handle, "websockets") as client:
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
