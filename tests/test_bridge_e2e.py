"""The bridge end to end, as real processes: a paho gauge publishes, the bridge (a child process)
evaluates and stores, paho subscribers on TCP and on WebSockets receive the same events; on the
embedded broker and on Mosquitto, with SQLite and with PostgreSQL; over every transport, TLS included."""

import json
import ssl
from pathlib import Path

import pytest

from tests.brokers import HOST, BrokerHandle, MosquittoProcess, MqttProbe, Scheme, free_port
from tests.credentials import Certificates
from tests.processes import bridge_process
from tests.stream import query

CONFIG = """
[[characteristic]]
id = 1
name = "Shaft length"
topic = "plant/line1/shaft"
chart = "imr"
center = 10.0
sigma = 1.0

[[characteristic]]
id = 2
name = "Bore diameter"
topic = "plant/line1/bore"
chart = "xbar_r"
subgroup_size = 3
baseline = 3
usl = 13.0
lsl = 7.0
"""


def write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    """The characteristics file of a test."""
    path = tmp_path / "chars.toml"
    path.write_text(text)
    return path


def payloads(probe: MqttProbe, topic: str, count: int, timeout: float = 15.0) -> list[dict]:
    """The first ``count`` JSON payloads on ``topic`` (fails if they do not arrive in time)."""
    messages = probe.wait_for(topic, count, timeout)
    assert len(messages) >= count, f"{len(messages)} of {count} messages on {topic}"
    return [json.loads(m.payload) for m in messages[:count]]


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_capability_follows_the_samples_and_seq_keeps_its_type(broker: BrokerHandle, database: str,
                                                               tmp_path: Path) -> None:
    """The retained limits of a characteristic with spec limits are republished as its capability
    moves (here with no minimum interval); a string seq comes back a string."""
    config = write_config(tmp_path, '[[characteristic]]\nid = 1\nname = "s"\ntopic = "plant/s"\n'
                                    'chart = "imr"\nbaseline = 3\nusl = 13.0\nlsl = 7.0\n')
    bridge = bridge_process(tmp_path, broker.url("bridge"), database, config, "bridge:test",
                            "--capability-interval", "0")
    bridge.start()
    try:
        with MqttProbe(broker, "tcp") as probe:
            probe.subscribe("spc/1/#")
            for k, value in enumerate([10.0, 10.4, 9.8, 10.1, 11.5, 8.2]):
                probe.publish("plant/s", json.dumps({"value": value, "seq": f"r-{k}"}))
            samples = payloads(probe, "spc/1/sample", 6)
            limits = payloads(probe, "spc/1/limits", 5)  # baseline, monitoring, then one per sample
        assert [s["seq"] for s in samples] == [f"r-{k}" for k in range(6)]
        capability = [lim["capability"] for lim in limits if lim["phase"] == "monitoring"]
        assert len(capability) >= 3 and len({c["ppk"] for c in capability}) == len(capability)
    finally:
        bridge.stop()


def test_gauge_to_tcp_and_websocket_subscribers(broker: BrokerHandle, database: str,
                                                tmp_path: Path) -> None:
    """Samples, violations and retained limits reach a TCP and a WebSocket subscriber alike."""
    bridge = bridge_process(tmp_path, broker.url("bridge"), database,
                            write_config(tmp_path))
    bridge.start()
    try:
        with MqttProbe(broker, "tcp") as tcp, MqttProbe(broker, "websockets") as ws, \
                MqttProbe(broker, "tcp") as gauge:
            for probe in (tcp, ws):
                probe.subscribe("spc/#")
            for value in ("10.0", '{"value": 10.5, "ts": "2026-11-26T12:00:00.123+01:00", "seq": 7}',
                          "13.9"):
                gauge.publish("plant/line1/shaft", value)
            for subgroup in ([10.0, 10.2, 9.9], [10.1, 9.8, 10.0], [9.9, 10.1, 10.3]):
                gauge.publish("plant/line1/bore", json.dumps({"values": subgroup}))
            received = {}
            for probe in (tcp, ws):
                received[probe] = (
                    payloads(probe, "spc/1/sample", 3), payloads(probe, "spc/1/violation", 1),
                    payloads(probe, "spc/2/sample", 3), payloads(probe, "spc/2/limits", 2),
                    payloads(probe, "spc/1/limits", 1),
                    [m.payload for m in probe.wait_for("spc/bridge/state")])
            assert received[tcp] == received[ws]
            samples, violations, bore, bore_limits, shaft_limits, state = received[tcp]
            assert [s["value"] for s in samples] == [10.0, 10.5, 13.9]
            assert [s["zone"] for s in samples] == ["zone_c_upper", "zone_c_upper", "beyond_ucl"]
            assert [s["in_control"] for s in samples] == [True, True, False]
            assert samples[1]["timestamp"] == "2026-11-26T12:00:00.123+01:00"  # kept exactly
            assert samples[1]["seq"] == 7 and samples[2]["mr"] == pytest.approx(3.4)  # an integer stays one
            assert set(samples[0]) == {"sample_id", "characteristic_id", "timestamp", "value", "zone",
                                       "in_control", "n"}
            assert violations == [{
                "violation_id": violations[0]["violation_id"], "characteristic_id": 1,
                "sample_id": samples[2]["sample_id"], "rule_id": 1,
                "rule_name": "One point beyond 3 sigma", "severity": "CRITICAL", "chart": "i"}]
            # phase I: unjudged until the last baseline subgroup completes the limits
            assert [b["zone"] for b in bore] == [None, None, "zone_c_upper"]
            assert bore[0]["range"] == pytest.approx(0.3)
            assert [lim["phase"] for lim in bore_limits] == ["baseline", "monitoring"]
            monitoring = bore_limits[1]
            assert monitoring["center"] == pytest.approx(10.03333333)
            assert monitoring["dispersion"]["chart"] == "r" and monitoring["capability"]["cp"] > 0
            assert shaft_limits[0]["ucl"] == 13.0 and state == [b"online"]
            # retained: a subscriber that comes late still gets the current limits and state
            with MqttProbe(broker, "websockets") as late:
                late.subscribe("spc/+/limits")
                late.subscribe("spc/bridge/state")
                assert payloads(late, "spc/2/limits", 1)[0]["phase"] == "monitoring"
                assert late.wait_for("spc/bridge/state")[0].payload == b"online"
            stored = query(database, "select characteristic_id, count(*) from samples "
                                    "group by characteristic_id order by characteristic_id")
            assert stored == [(1, 3), (2, 3)]
            assert query(database, "select rule_id, chart from violations") == [(1, "i")]
            assert query(database, "select zone from samples where characteristic_id = 2 "
                                  "order by idx") == [("zone_c_upper",), ("zone_c_lower",),
                                                      ("zone_c_upper",)]
            assert bridge.stop() == 0
            assert tcp.wait_for("spc/bridge/state", 2)[-1].payload == b"offline"
    finally:
        bridge.stop()


@pytest.mark.parametrize(("scheme", "client_certificate"), [("ws", False), ("mqtts", True), ("wss", False)])
def test_bridge_connects_over_websockets_and_tls(broker: BrokerHandle, tmp_path: Path, scheme: Scheme,
                                                 client_certificate: bool) -> None:
    """``--broker ws://``, ``mqtts://`` and ``wss://`` (with ``--ca-file``, and a client certificate or not)
    work like ``mqtt://``: readings in, events out."""
    options = []
    if scheme in ("mqtts", "wss"):
        options += ["--ca-file", str(broker.certs.ca)]
    if client_certificate:
        options += ["--cert-file", str(broker.certs.client_cert), "--key-file", str(broker.certs.client_key)]
    bridge = bridge_process(tmp_path, broker.url("bridge", scheme), f"sqlite:///{tmp_path / 'spc.db'}",
                            write_config(tmp_path), "bridge:test", *options)
    with MqttProbe(broker, "tcp") as probe:
        probe.subscribe("spc/1/sample")
        bridge.start()
        try:
            probe.publish("plant/line1/shaft", "10.25")
            assert payloads(probe, "spc/1/sample", 1)[0]["value"] == 10.25
            assert bridge.stop() == 0
        finally:
            bridge.stop()


def test_bridge_presents_its_client_certificate_where_one_is_required(
    tmp_path: Path, role_users: Path, certificates: Certificates
) -> None:
    """Mosquitto's mqtts listener with ``require_certificate true``: the bridge gets in with ``--cert-file`` and
    ``--key-file``; a client without a certificate does not, even with the right password."""
    mosquitto = MosquittoProcess(tmp_path, (free_port(), free_port(), free_port(), free_port()), role_users,
                                 certificates)
    conf = mosquitto.conf_path.read_text()
    listener = f"listener {mosquitto.tls_port} {HOST}\n"
    mosquitto.conf_path.write_text(conf.replace(
        listener, f"{listener}cafile {certificates.ca}\nrequire_certificate true\n"))
    mosquitto.start()
    bridge = bridge_process(tmp_path, mosquitto.url("bridge", "mqtts"), f"sqlite:///{tmp_path / 'spc.db'}",
                            write_config(tmp_path), "bridge:test", "--ca-file", str(certificates.ca),
                            "--cert-file", str(certificates.client_cert), "--key-file", str(certificates.client_key))
    try:
        bridge.start()
        with pytest.raises((ssl.SSLError, ConnectionError, TimeoutError)):
            MqttProbe(mosquitto, "tcp", tls=True, user="bridge", timeout=2).close()
        assert bridge.stop() == 0
    finally:
        bridge.stop()
        mosquitto.stop()
