"""Client ids belong to their users (broker.identity), on both brokers and every listener: nobody takes over,
resumes or wipes another user's session, the bridge's above all; and a flood of wrong passwords on the
embedded broker neither stalls its event loop nor is let through (broker.amqtt_login)."""

from __future__ import annotations

import argparse
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bridge.config import add_settings_arguments, settings_from_args
from broker.amqtt_login import LoginThrottle
from broker.identity import may_use_client_id
from tests.brokers import (
    SCHEMES, BrokerHandle, ConnectionRefused, EmbeddedBrokerProcess, MqttProbe, Scheme, Transport,
)
from tests.credentials import Certificates
from tests.processes import bridge_process
from tests.stream import query, wait_until, write_config

# (user, client id, allowed): the rule, and what both brokers must decide.
CASES = [
    ("gauge", "gauge", True),
    ("gauge", "gauge:line-3", True),
    ("gauge", "gauge:", True),
    ("gauge", "", True),                 # the broker picks a random id (clean session)
    ("gauge", "bridge", False),          # the bridge's default id
    ("gauge", "bridge:test", False),
    ("gauge", "gauge2", False),
    ("gauge", "gauge-1", False),
    ("gauge", "Gauge", False),
    ("dashboard", "gauge:line-3", False),
    ("admin", "bridge", False),          # admins too: a session is its owner's
    ("gauge", "auto-0123", False),       # looks like one Mosquitto assigns, but is not
]
READINGS = 120
BRIDGE_ID = "bridge"  # the bridge's client id when its broker URL logs in as user "bridge" (bridge.config)
FLOOD = 500
FLOOD_ADDRESS = "127.0.0.66"


def connect(broker: BrokerHandle, scheme: Scheme, user: str, **options: object) -> MqttProbe:
    """A probe on the listener of `scheme`, logged in as `user`."""
    transport: Transport = "websockets" if scheme in ("ws", "wss") else "tcp"
    return MqttProbe(broker, transport, tls=scheme in ("mqtts", "wss"), user=user, **options)  # type: ignore[arg-type]


def admitted(broker: BrokerHandle, scheme: Scheme, user: str, client_id: str, clean_session: bool = True) -> bool:
    """Whether the broker admits `user` with `client_id` (the probe disconnects again); a refusal must be
    CONNACK "not authorized"."""
    try:
        connect(broker, scheme, user, client_id=client_id, clean_session=clean_session).close()
    except ConnectionRefused as refused:
        assert "Not authorized" in str(refused)
        return False
    return True


def test_the_rule() -> None:
    assert [may_use_client_id(user, client_id) for user, client_id, _ in CASES] == [ok for _, _, ok in CASES]


def test_the_bridges_client_id_defaults_to_its_user_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPC_BRIDGE_CLIENT_ID", raising=False)
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)

    def client_id(*argv: str) -> str:
        return settings_from_args(parser.parse_args(["--config", "c.toml", *argv])).client_id

    assert client_id("--broker", "mqtts://bridge:pw@127.0.0.1") == "bridge"
    assert client_id("--broker", "mqtts://bridge:pw@127.0.0.1", "--client-id", "bridge:line-2") == "bridge:line-2"
    assert client_id("--broker", "mqtt://127.0.0.1") == "spc-bridge"  # anonymous, localhost-only broker


@pytest.mark.parametrize("scheme", SCHEMES)
def test_both_brokers_decide_as_the_rule(broker: BrokerHandle, scheme: Scheme) -> None:
    with ThreadPoolExecutor(len(CASES)) as pool:
        decided = list(pool.map(lambda case: admitted(broker, scheme, case[0], case[1]), CASES))
    wrong = [f"{user} as {client_id!r}: {'admitted' if got else 'refused'}"
             for (user, client_id, _), got in zip(CASES, decided) if got != may_use_client_id(user, client_id)]
    assert wrong == []


def test_a_gauge_cannot_take_the_bridges_client_id(broker: BrokerHandle, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = bridge_process(tmp_path, broker.url("bridge"), db, write_config(tmp_path), None)
    bridge.start()
    try:
        with connect(broker, "mqtt", "gauge", client_id="gauge:line") as gauge:
            for scheme in SCHEMES:
                for clean_session in (True, False):
                    assert not admitted(broker, scheme, "gauge", BRIDGE_ID, clean_session), scheme
            gauge.publish("line/seq", '{"value": 1.5, "seq": 1}')
            wait_until(lambda: query(db, "select count(*) from readings")[0][0] == 1, 20, "the reading stored")
        assert bridge.output().count("MQTT Connected") == 1, "the bridge was disconnected"
    finally:
        bridge.stop()
    logged = caplog.text if broker.kind == "embedded" else broker.log_tail(200)  # type: ignore[attr-defined]
    assert "user gauge may not use client id 'bridge': it may use 'gauge' or 'gauge:<anything>'" in logged


def test_an_intruder_cannot_resume_or_wipe_the_bridges_session(broker: BrokerHandle, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = bridge_process(tmp_path, broker.url("bridge"), db, write_config(tmp_path), None)
    bridge.start()
    try:
        with connect(broker, "mqtt", "gauge", client_id="gauge:line") as gauge:
            gauge.publish("line/seq", '{"value": 1.5, "seq": 0}')
            wait_until(lambda: query(db, "select count(*) from readings")[0][0] == 1, 20, "the bridge subscribed")
            bridge.stop()
            for seq in range(1, READINGS + 1):
                gauge.publish("line/seq", f'{{"value": {seq % 7}.5, "seq": {seq}}}')
            for scheme in SCHEMES:
                for user in ("gauge", "dashboard", "operator", "admin"):
                    for clean_session in (False, True):  # resume it, wipe it
                        assert not admitted(broker, scheme, user, BRIDGE_ID, clean_session), (scheme, user)
        bridge.start()
        wait_until(lambda: query(db, "select count(*) from readings")[0][0] >= READINGS + 1, 30, "queued readings")
        time.sleep(0.5)
        assert query(db, "select count(*) from readings")[0][0] == READINGS + 1
    finally:
        bridge.stop()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_users_own_prefixed_id_is_its_own(broker: BrokerHandle, scheme: Scheme) -> None:
    own = f"dashboard:{scheme}-screen"
    with connect(broker, scheme, "dashboard", client_id=own, clean_session=False) as dashboard:
        dashboard.subscribe("spc/+/sample")
    with connect(broker, "mqtt", "admin") as publisher:
        publisher.publish("spc/1/sample", b"queued")
        for intruder_scheme in SCHEMES:
            for clean_session in (False, True):
                assert not admitted(broker, intruder_scheme, "operator", own, clean_session)
    with connect(broker, scheme, "dashboard", client_id=own, clean_session=False) as dashboard:
        assert [m.payload for m in dashboard.wait_for("spc/1/sample")] == [b"queued"]


def test_the_throttle_refuses_an_address_for_a_while_after_five_failures() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=5, window=60.0, backoff=30.0, clock=lambda: now[0])
    assert [throttle.failed("10.0.0.1") for _ in range(5)] == [False] * 4 + [True]
    assert throttle.refused_for("10.0.0.1") == 30.0 and throttle.refused_for("10.0.0.2") == 0.0
    now[0] = 30.0
    assert throttle.refused_for("10.0.0.1") == 0.0  # the back-off is over; the failures still count
    assert throttle.failed("10.0.0.1")
    now[0] = 200.0
    assert throttle.refused_for("10.0.0.1") == 0.0 and not throttle.failed("10.0.0.1")


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _wrong_password_connect(address: tuple[str, int], source: str) -> int:
    """One CONNECT from `source` as user gauge with a wrong password; the CONNACK return code."""
    body = (_mqtt_string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30) + _mqtt_string("")
            + _mqtt_string("gauge") + _mqtt_string("not-the-password"))
    with socket.create_connection(address, timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                break
            connack += chunk
    assert connack[:2] == b"\x20\x02", connack
    return connack[3]


@pytest.fixture
def broker_process(tmp_path: Path, role_users: Path, certificates: Certificates) -> Iterator[EmbeddedBrokerProcess]:
    """`spc-bridge broker`, started: the latencies measured are the broker's, not those of the test's process."""
    broker = EmbeddedBrokerProcess(tmp_path, role_users, certificates)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.serial
@pytest.mark.parametrize("sources", [1, 100], ids=["one-address", "100-addresses"])
def test_a_wrong_password_flood_neither_stalls_ingest_nor_gets_through(
        broker_process: EmbeddedBrokerProcess, sources: int) -> None:
    broker = broker_process
    addresses = [FLOOD_ADDRESS] if sources == 1 else [f"127.0.{1 + i // 200}.{50 + i % 200}" for i in range(sources)]
    sent: dict[str, float] = {}
    stop = threading.Event()
    with connect(broker, "mqtt", "bridge", client_id="bridge:watch") as watcher, \
            connect(broker, "mqtt", "gauge", client_id="gauge:line") as gauge:
        watcher.subscribe("line/flood")

        def publish() -> None:
            while not stop.is_set():
                body = str(len(sent))
                sent[body] = time.monotonic()
                gauge.publish("line/flood", body)
                stop.wait(0.02)

        publisher = threading.Thread(target=publish)
        publisher.start()
        try:
            time.sleep(0.5)
            with ThreadPoolExecutor(20) as pool:
                codes = list(pool.map(lambda i: _wrong_password_connect((broker.host, broker.port),
                                                                        addresses[i % sources]), range(FLOOD)))
            time.sleep(0.5)
        finally:
            stop.set()
            publisher.join(10)
        messages = watcher.wait_for("line/flood", len(sent), timeout=10)
        if sources == 1:
            with pytest.raises(ConnectionRefused):  # the right password too, from the throttled address
                connect(broker, "mqtt", "gauge", source=FLOOD_ADDRESS).close()
        connect(broker, "mqtt", "gauge").close()  # from another address: unaffected
    assert codes == [5] * FLOOD
    assert len(messages) == len(sent)
    latencies = sorted(message.timestamp - sent[message.payload.decode()] for message in messages)
    arrivals = [message.timestamp for message in messages]
    gap = max(later - earlier for earlier, later in zip(arrivals, arrivals[1:]))
    assert latencies[int(len(latencies) * 0.99)] < 0.2, f"p99 latency {latencies[int(len(latencies) * 0.99)]:.3f} s"
    assert gap < 0.5, f"readings stopped for {gap:.3f} s"
