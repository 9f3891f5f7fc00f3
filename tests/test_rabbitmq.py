"""The bridge on a private RabbitMQ node (its MQTT plugin, ``mqtt.prefetch`` 1000, ``--redelivered-ids
renumbered``): through kill -9 of the bridge mid-stream readings with a key are stored exactly once and
none without one is lost; and two of RabbitMQ's documented
limitations, no retained messages for wildcard subscriptions and no MQTT 5."""

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import MqttProbe
from tests.credentials import password
from tests.rabbitmq import RabbitMqProcess
from tests.stream import TOPICS, Recorder, missing_keyless, query, streaming, wait_until

READINGS = 3000
RATE = 500.0  # readings per second: the stream lasts about 6 s
KEYED = {1: "seq", 2: "id", 3: "ts"}  # the stream's characteristics whose readings carry a key
DRAIN_TIMEOUT = 60.0
RENUMBERED = ("--redelivered-ids", "renumbered")  # RabbitMQ gives redeliveries new packet ids from 1


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMqProcess]:
    """One RabbitMQ node for the module (a fresh node boots in 10 to 15 s), stopped afterwards."""
    node = RabbitMqProcess(tmp_path_factory.mktemp("rabbitmq"), prefetch=1000)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def stored_keys(db: str, cid: int) -> list[str]:
    """The keys of the readings stored for keyed characteristic ``cid``, in the order stored."""
    column = "ts" if KEYED[cid] == "ts" else "seq"
    return [key for key, in query(db, f"select {column} from readings where characteristic_id = {cid} order by id")]


def every_event_received(recorder: Recorder, db: str) -> bool:
    """Whether the recorder has received an event for every sample and violation stored."""
    return all({i for i, in query(db, f"select id from {table} where characteristic_id = {cid}")}
               <= set(recorder.ids(kind, cid))
               for cid in TOPICS for kind, table in (("sample", "samples"), ("violation", "violations")))


def test_kill_bridge_mid_stream(rabbitmq: RabbitMqProcess, tmp_path: Path) -> None:
    """kill -9 the bridge twice mid-stream and restart it: it resumes its session, RabbitMQ delivers
    again what it had not acknowledged (DUP set, new packet ids), and every reading with a seq, an id or
    a ts is stored exactly once, in the order sent; every event arrives. No reading without a key is
    lost: with new ids a redelivery may have the packet id and payload of an earlier delivery (bare
    numbers take three values), which the default ``--redelivered-ids kept`` drops as a resend (2 runs
    of 8 lost 28 and 61); such readings are stored twice instead when the bridge was killed after
    storing them and before its PUBACK."""
    with streaming(rabbitmq, tmp_path, READINGS, RATE, options=RENUMBERED) as (bridge, gauges, recorder, db):
        gauges.start()
        for share in (0.3, 0.6):
            wait_until(lambda: gauges.published >= share * READINGS, 30, f"{share:.0%} of the stream published")
            bridge.kill()
            bridge.start()
            assert "session resumed" in bridge.output()
        gauges.wait(60)
        keyed = ", ".join(map(str, KEYED))
        wait_until(lambda: query(db, f"select count(*) from readings where characteristic_id in ({keyed})")[0][0]
                   >= sum(len(gauges.sent[cid]) for cid in KEYED), DRAIN_TIMEOUT, "every keyed reading stored")
        time.sleep(2)  # what RabbitMQ delivers again after that must not add a row
        for cid, field in KEYED.items():
            sent = [str(json.loads(p)[field]) for p in gauges.sent[cid]]
            assert stored_keys(db, cid) == sent, f"characteristic {cid}: stored once each, in the order sent"
        wait_until(lambda: not missing_keyless(gauges, db), DRAIN_TIMEOUT, "every reading without a key stored")
        wait_until(lambda: every_event_received(recorder, db), DRAIN_TIMEOUT, "every event at the recorder")


def test_no_retained_message_for_a_wildcard_subscription(rabbitmq: RabbitMqProcess) -> None:
    """A documented RabbitMQ limitation: a retained message is sent to a subscription of its exact topic,
    never to one with a wildcard (``spc/+/limits`` gets no retained limits)."""
    with MqttProbe(rabbitmq, user="admin") as publisher:
        publisher.publish("spc/41/limits", '{"ucl": 13.0}', retain=True)
    with MqttProbe(rabbitmq, user="dashboard") as dashboard:
        dashboard.subscribe("spc/+/limits")
        assert not dashboard.wait_for("spc/41/limits", timeout=2.0)
        dashboard.subscribe("spc/41/limits")
        retained = dashboard.wait_for("spc/41/limits", timeout=5.0)
        assert [(m.payload, m.retain) for m in retained] == [(b'{"ucl": 13.0}', True)]
    with MqttProbe(rabbitmq, user="admin") as publisher:
        publisher.publish("spc/41/limits", "", retain=True)  # clears it


def _connect_packet(level: int, user: str) -> bytes:
    """An MQTT CONNECT of protocol level ``level`` (4: 3.1.1, 5: 5.0) with clean session, a user name and
    its password."""
    def text(value: str) -> bytes:
        return struct.pack("!H", len(value)) + value.encode()

    properties = b"\x00" if level == 5 else b""  # MQTT 5: an empty property list
    body = (text("MQTT") + bytes([level, 0xC2]) + struct.pack("!H", 30) + properties
            + text(f"{user}:probe-v{level}") + text(user) + text(password(user)))
    assert len(body) < 128  # a one-byte remaining length
    return bytes([0x10, len(body)]) + body


def _answer_to_connect(rabbitmq: RabbitMqProcess, level: int) -> bytes:
    """What the broker sends back to a CONNECT of protocol level ``level`` before it closes the
    connection or 5 s pass."""
    with socket.create_connection((rabbitmq.host, rabbitmq.port), timeout=5.0) as sock:
        sock.sendall(_connect_packet(level, "dashboard"))
        try:
            return sock.recv(16)
        except TimeoutError:
            return b"(no answer)"


def test_mqtt_5_refused(rabbitmq: RabbitMqProcess) -> None:
    """RabbitMQ 3.10 closes an MQTT 5 connection at its CONNECT, without a CONNACK; the same CONNECT at
    3.1.1 is accepted."""
    assert _answer_to_connect(rabbitmq, 4) == b"\x20\x02\x00\x00"  # CONNACK, no session, accepted
    assert _answer_to_connect(rabbitmq, 5) == b""
