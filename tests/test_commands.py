"""Acknowledgements and history over MQTT request/response, with the bridge as a real process."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.contract import COMMANDS
from tests.brokers import EmbeddedBrokerThread, MqttProbe
from tests.dashboards import BORE_TOPIC, CONFIG, SHAFT_TOPIC
from tests.processes import ChildProcess, bridge_process
from tests.stream import query


@pytest.fixture
def bridge(embedded_broker: EmbeddedBrokerThread, database: str, tmp_path: Path) -> Iterator[ChildProcess]:
    """The bridge on the embedded broker, with three violations already raised (ids 1, 2, 3)."""
    config = tmp_path / "chars.toml"
    config.write_text(CONFIG)
    process = bridge_process(tmp_path, embedded_broker.url("bridge"),
                             database, config)
    process.start()
    try:
        with MqttProbe(embedded_broker, "tcp") as gauge:
            gauge.subscribe("spc/+/violation")
            for value in ("10.0", "14.0", "10.0", "14.5", "10.1"):
                gauge.publish(SHAFT_TOPIC, value)
            gauge.publish(BORE_TOPIC, "0.5")
            assert len(gauge.wait_for("spc/1/violation", 2, timeout=15)) == 2
            assert gauge.wait_for("spc/2/violation", 1, timeout=15)
        yield process
    finally:
        process.stop()


def ask(broker: EmbeddedBrokerThread, user: str, command: str, body: object,
        also: list[str] | None = None) -> tuple[dict, MqttProbe]:
    """Publish a request as ``user`` and return its response (the probe stays open)."""
    probe = MqttProbe(broker, "tcp")
    probe.subscribe(f"spc/bridge/response/{user}/#")
    for topic in also or []:
        probe.subscribe(topic)
    payload = body if isinstance(body, bytes) else json.dumps(body)
    probe.publish(f"spc/bridge/request/{user}/{command}", payload)
    responses = probe.wait_for(f"spc/bridge/response/{user}/{command}", 1, timeout=15)
    assert responses, "no response"
    return json.loads(responses[0].payload), probe


def test_acknowledge_a_violation(embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess,
                                 database: str) -> None:
    """The ack event carries the seed's fields and the user of the topic; the DB keeps it."""
    with MqttProbe(embedded_broker, "tcp") as other:
        other.subscribe("spc/bridge/response/operator2/#")
        response, probe = ask(embedded_broker, "operator1", "ack",
                              {"violation_id": 1, "reason_code": "machine", "reason": "Process adjusted",
                               "transaction": 7},
                              also=["spc/1/ack"])
        with probe:
            assert response["status"] == "ok" and response["transaction"] == 7
            assert response["data"]["violation_ids"] == [1]
            ack = json.loads(probe.wait_for("spc/1/ack", 1, timeout=10)[0].payload)
            assert ack == {"violation_id": 1, "characteristic_id": 1, "acknowledged": True,
                           "ack_user": "operator1", "ack_reason": "Process adjusted",
                           "ack_time": response["data"]["ack_time"], "reason_code": "machine",
                           "assignable_cause": False}
        time.sleep(0.3)
        assert other.received("spc/bridge/response/operator2/ack") == []
    assert query(database, "select acknowledged, ack_user, ack_reason from violations where id = 1") == [
        (True, "operator1", "Process adjusted")]


def test_acknowledge_several_at_once(embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess,
                                     database: str) -> None:
    """Violations of two characteristics in one request: one ack event on each topic."""
    response, probe = ask(embedded_broker, "op", "ack", {"violation_ids": [2, 3], "reason_code": "tool_wear",
                                                        "reason": "Tool changed"},
                          also=["spc/1/ack", "spc/2/ack"])
    with probe:
        assert response["status"] == "ok" and response["data"]["violation_ids"] == [2, 3]
        assert json.loads(probe.wait_for("spc/1/ack", 1)[0].payload)["violation_id"] == 2
        assert json.loads(probe.wait_for("spc/2/ack", 1)[0].payload)["violation_id"] == 3
    assert query(database, "select count(*) from violations where acknowledged") == [(2,)]


@pytest.mark.parametrize(("body", "error"), [
    ({"violation_id": 99, "reason_code": "unknown"}, "unknown violation(s) [99]"),
    ({"violation_ids": [1, 99], "reason_code": "unknown"}, "unknown violation(s) [99]"),
    ({"violation_id": 1, "reason_code": "gremlins"}, "unknown reason_code 'gremlins': use one of tool_wear, "),
    ({"violation_id": 1, "reason": "x"}, "reason_code: Field required"),
    ({"violation_id": 1, "reason_code": "unknown", "ack_user": "boss"}, "ack_user: Extra inputs"),
    ({"reason_code": "unknown"}, "give violation_id or violation_ids"),
    (b"not json", "bad request"),
])
def test_refused_acknowledgement_changes_nothing(embedded_broker: EmbeddedBrokerThread,
                                                 bridge: ChildProcess, database: str,
                                                 body: object, error: str) -> None:
    """An error response to the asker only, no ack event, nothing stored but the reject."""
    response, probe = ask(embedded_broker, "operator1", "ack", body, also=["spc/+/ack"])
    with probe:
        assert response["status"] == "error" and error in response["error"]
        time.sleep(0.3)
        assert [m for m in probe.messages if m.topic.endswith("/ack") and m.topic.startswith("spc/1")] == []
    assert query(database, "select count(*) from violations where acknowledged") == [(0,)]
    assert query(database, "select topic from rejects") == [("spc/bridge/request/operator1/ack",)]


def test_already_acknowledged_is_refused(embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess,
                                         database: str) -> None:
    """The second acknowledgement of a violation is an error and keeps the first one's user."""
    first, probe = ask(embedded_broker, "alice", "ack", {"violation_id": 1, "reason_code": "unknown"})
    probe.close()
    second, probe = ask(embedded_broker, "bob", "ack", {"violation_id": 1, "reason_code": "operator"})
    probe.close()
    assert first["status"] == "ok" and second["status"] == "error"
    assert "already acknowledged" in second["error"]
    assert query(database, "select ack_user from violations where id = 1") == [("alice",)]


def test_unknown_command(embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess) -> None:
    """A command the bridge does not know gets an error naming the known ones."""
    response, probe = ask(embedded_broker, "op", "reboot", {"now": True})
    probe.close()
    assert response["status"] == "error" and str(sorted(COMMANDS)) in response["error"]


@pytest.mark.serial
def test_history_and_open_violations_for_a_late_dashboard(
        embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess) -> None:
    """Last N samples, violations, open violations and limits, in one answer, within a second."""
    acked, probe = ask(embedded_broker, "op", "ack", {"violation_id": 1, "reason_code": "machine", "reason": "adjusted"})
    probe.close()
    started = time.monotonic()
    response, probe = ask(embedded_broker, "dash1", "history",
                          {"characteristic_id": 1, "limit": 3, "transaction": "h1"})
    probe.close()
    assert time.monotonic() - started < 1.0
    assert response["status"] == "ok" and response["transaction"] == "h1"
    data = response["data"]
    assert [s["value"] for s in data["samples"]] == [10.0, 14.5, 10.1]
    assert [s["zone"] for s in data["samples"]] == ["zone_c_upper", "beyond_ucl", "zone_c_upper"]
    assert [v["violation_id"] for v in data["violations"]] == [1, 2]
    assert [v["violation_id"] for v in data["open_violations"]] == [2]
    assert data["limits"]["center"] == 10.0 and data["limits"]["phase"] == "monitoring"
    bad, probe = ask(embedded_broker, "dash1", "history", {"characteristic_id": 42})
    probe.close()
    assert bad["status"] == "error" and "no characteristic 42" in bad["error"]


def test_acknowledgements_survive_a_restart(embedded_broker: EmbeddedBrokerThread,
                                            bridge: ChildProcess) -> None:
    """After a restart the history still shows who acknowledged what."""
    acked, probe = ask(embedded_broker, "op", "ack", {"violation_id": 2, "reason_code": "measurement_error", "reason": "checked"})
    probe.close()
    assert bridge.stop() == 0
    bridge.start()
    response, probe = ask(embedded_broker, "dash", "history", {"characteristic_id": 1})
    probe.close()
    assert [v["violation_id"] for v in response["data"]["open_violations"]] == [1]
