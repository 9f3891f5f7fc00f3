"""Commands a client controls in size or rate never stall or starve the bridge: every bad request gets an
error response with its reason, a flood is answered ``busy``, a retained request is ignored, and a gauge's
readings keep their normal latency meanwhile. Real bridge process, both brokers, SQLite and PostgreSQL."""

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from bridge.contract import (
    ACK_COMMAND, HISTORY_COMMAND, MAX_COMMAND_CHARS, MAX_HISTORY, request_topic, response_topic,
)
from tests.brokers import BrokerHandle, EmbeddedBrokerThread, MqttProbe
from tests.credentials import password
from tests.dashboards import (
    SHAFT, SHAFT_TOPIC, WAIT, EventWatcher, PacedGauge, acknowledge, gauge_readings, rss_mib, start_bridge,
)
from tests.processes import ChildProcess
from tests.stream import query, wait_until

NORMAL_LATENCY_S = 2.0
OPERATOR = "operator"
DASHBOARD = "dashboard"
ADMIN = "admin"  # the one role whose requests reach the bridge under any command name
# (case, command, payload, what the error says, the transaction echoed: only one within bounds)
BAD_REQUESTS: list[tuple[str, str, Any, str, int | None]] = [
    ("history nested 5,000 deep", HISTORY_COMMAND,
     b'{"characteristic_id": 1, "transaction": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
     "nests deeper than 8 levels", None),
    ("violation id 2**63", ACK_COMMAND, {"violation_id": 2**63, "reason": "x", "transaction": 1},
     "violation_id: Input should be less than or equal to 9223372036854775807", 1),
    ("violation id 0", ACK_COMMAND, {"violation_ids": [1, 0], "reason": "x"},
     "violation_ids.1: Input should be greater than or equal to 1", None),
    ("command name of 1,100 characters", "c" * 1100, {"transaction": 2}, "unknown command 'ccc", 2),
    ("ack of 70,000 ids", ACK_COMMAND, {"violation_ids": list(range(1, 70_001)), "reason": "x", "transaction": 3},
     "the request is 478946 bytes; at most 16384 are accepted", None),
    ("ack of 1,001 ids", ACK_COMMAND, {"violation_ids": list(range(1, 1002)), "reason": "x", "transaction": 4},
     "violation_ids: List should have at most 1000 items", 4),
    ("10 MB transaction", HISTORY_COMMAND, {"characteristic_id": 1, "transaction": "t" * 10_000_000},
     "the request is 10000043 bytes; at most 16384 are accepted", None),
    *((f"transaction {value!r:.20}", HISTORY_COMMAND, {"characteristic_id": 1, "transaction": value},
       "transaction: must be a string of at most 200 characters or a 64-bit integer", None)
      for value in ("t" * 201, 2**63, -2**63 - 1, True, 1.5, [1])),
]


def encoded(body: Any) -> bytes:
    """A request payload: bytes as they are, anything else as JSON."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def assert_normal_latency(gauge: PacedGauge, db_url: str, already: int) -> None:
    """Every reading of the paced gauge is stored and its sample event came within NORMAL_LATENCY_S."""
    latencies = gauge.latencies()
    assert len(latencies) >= 5, f"the gauge published only {len(latencies)} readings"
    assert max(latencies) < NORMAL_LATENCY_S, f"latencies: {sorted(latencies)[-5:]}"
    assert query(db_url, "select count(*) from readings") == [(already + len(latencies),)]


def no_traceback(bridge: ChildProcess) -> None:
    """The bridge logged no traceback and is still running."""
    assert "Traceback" not in bridge.output(), bridge.output()[-3000:]
    assert bridge.proc is not None and bridge.proc.poll() is None


@pytest.mark.serial
def test_bad_requests_get_their_reason_while_readings_flow(broker: BrokerHandle, database: str,
                                                          tmp_path: Path) -> None:
    """Each reproduced case is an error response to the asker, with its reason (its transaction echoed only
    when within bounds); the gauge's readings keep normal latency; a good acknowledgement still works."""
    bridge = start_bridge(broker, tmp_path, database)
    try:
        with EventWatcher(broker, SHAFT) as watcher:
            gauge_readings(broker, SHAFT_TOPIC, 14.0)  # beyond the UCL: one violation to acknowledge
            violation = watcher.violations(1)[0]["violation_id"]
        with PacedGauge(broker, SHAFT, SHAFT_TOPIC) as gauge, MqttProbe(broker, user=ADMIN) as admin:
            admin.subscribe(response_topic(ADMIN, "#"))
            for case, command, body, error, echo in BAD_REQUESTS:
                admin.publish(request_topic(ADMIN, command), encoded(body))
                responses = admin.wait_for(response_topic(ADMIN, command[:MAX_COMMAND_CHARS]), 1, timeout=WAIT)
                assert responses and len(admin.messages) == 1, f"{case}: {len(admin.messages)} responses"
                admin.messages.clear()
                response = json.loads(responses[0].payload)
                assert response["status"] == "error" and error in response["error"], (case, response)
                assert response["transaction"] == echo and len(responses[0].payload) < 500, case
            assert acknowledge(broker, violation, "Tool changed")["status"] == "ok"
        assert_normal_latency(gauge, database, 1)
        assert query(database, "select acknowledged, ack_user from violations") == [(True, OPERATOR)]
        # the long command's reject is stored with its topic cut to the column
        assert query(database, "select length(topic) from rejects where reason like 'unknown command%'") == [
            (1024,)]
        no_traceback(bridge)
    finally:
        bridge.stop()


REFUSED_REASON = "refused by the database"
# A trigger that makes the database itself refuse one acknowledgement, as a real constraint would.
REFUSING_TRIGGER = {
    "sqlite": [f"CREATE TRIGGER refuse_ack BEFORE UPDATE ON violations WHEN NEW.ack_reason = '{REFUSED_REASON}' "
               "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"],
    "postgresql": [
        "CREATE FUNCTION refuse_ack() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.ack_reason = '{REFUSED_REASON}' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_ack BEFORE UPDATE ON violations FOR EACH ROW EXECUTE FUNCTION refuse_ack()"],
}


@pytest.mark.serial
def test_a_command_the_database_refuses_rolls_back_alone(embedded_broker: EmbeddedBrokerThread, database: str,
                                                         tmp_path: Path) -> None:
    """An acknowledgement that fails in the database (on PostgreSQL that aborts a transaction) is an error
    response; it runs in a savepoint, so the readings of its batch commit and the next command works."""
    bridge = start_bridge(embedded_broker, tmp_path, database)
    try:
        with EventWatcher(embedded_broker, SHAFT) as watcher:
            gauge_readings(embedded_broker, SHAFT_TOPIC, 14.0)
            violation = watcher.violations(1)[0]["violation_id"]
        engine = sa.create_engine(database)
        try:
            with engine.begin() as conn:
                for statement in REFUSING_TRIGGER[engine.dialect.name]:
                    conn.exec_driver_sql(statement)
        finally:
            engine.dispose()
        with PacedGauge(embedded_broker, SHAFT, SHAFT_TOPIC) as gauge:
            time.sleep(0.3)
            refused = acknowledge(embedded_broker, violation, REFUSED_REASON)
            assert refused["status"] == "error" and "the database refused this request" in refused["error"]
            time.sleep(0.3)
            assert acknowledge(embedded_broker, violation, "Tool changed")["status"] == "ok"
            time.sleep(0.3)
        assert_normal_latency(gauge, database, 1)
        assert query(database, "select ack_reason from violations") == [("Tool changed",)]
        no_traceback(bridge)
    finally:
        bridge.stop()


class Flood:
    """A dashboard publishing history requests as fast as its broker takes them (QoS 1, 100 in flight),
    counting the answers by status."""

    def __init__(self, broker: BrokerHandle, count: int) -> None:
        self.count = count
        self.statuses: Counter[str] = Counter()
        self.transactions: set[int] = set()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(DASHBOARD, password(DASHBOARD))
        self.client.max_inflight_messages_set(100)
        self.client.on_message = self._on_response
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        subscribed = self.client.subscribe(response_topic(DASHBOARD, HISTORY_COMMAND), 1)
        assert subscribed[0] == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.5)  # the SUBACK

    def _on_response(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        response = json.loads(message.payload)
        self.statuses[response["status"]] += 1
        self.transactions.add(response["transaction"])

    def send(self) -> None:
        """Publish every request and wait (bounded) until the broker has them all."""
        body = {"characteristic_id": SHAFT, "limit": MAX_HISTORY}
        infos = [self.client.publish(request_topic(DASHBOARD, HISTORY_COMMAND),
                                     json.dumps({**body, "transaction": k}), qos=1) for k in range(self.count)]
        for info in infos:
            info.wait_for_publish(WAIT)

    def answered(self) -> int:
        """Responses received so far."""
        return sum(self.statuses.values())

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def answer_despite_flood(broker: BrokerHandle) -> dict[str, Any]:
    """The operator's history answer, asked again (bounded) while the answer is ``busy``."""
    with MqttProbe(broker, user=OPERATOR) as operator:
        operator.subscribe(response_topic(OPERATOR, HISTORY_COMMAND))
        for attempt in range(1, 6):
            operator.publish(request_topic(OPERATOR, HISTORY_COMMAND), json.dumps({"characteristic_id": SHAFT}))
            answers = operator.wait_for(response_topic(OPERATOR, HISTORY_COMMAND), attempt, timeout=WAIT)
            assert len(answers) == attempt, "the operator got no answer"
            response: dict[str, Any] = json.loads(answers[-1].payload)
            if response["status"] != "busy":
                return response
            time.sleep(0.3)
        return response


@pytest.mark.serial
def test_a_flood_of_history_requests_is_answered_busy_and_readings_keep_their_latency(
        broker: BrokerHandle, tmp_path: Path) -> None:
    """3,000 history requests (limit 1000) from one dashboard while a gauge publishes: the dashboard's
    budget is carried out, the excess answered ``busy`` (then, past twice its budget, not at all), another
    user is still served, the readings keep normal latency, and the bridge's memory and SQLite's
    write-ahead log stay small."""
    db_file = tmp_path / "spc.db"
    bridge = start_bridge(broker, tmp_path, f"sqlite:///{db_file}")
    try:
        gauge_readings(broker, SHAFT_TOPIC, *[10 + k / 1000 for k in range(100)])  # some history to send back
        count = f"sqlite:///{db_file}", "select count(*) from readings"
        deadline = time.monotonic() + 5
        while query(*count)[0][0] < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        history = query(*count)[0][0]  # (the embedded broker has been seen to lose the last of a burst)
        rss_before = rss_mib(bridge.pid)
        with PacedGauge(broker, SHAFT, SHAFT_TOPIC) as gauge:
            flood = Flood(broker, 3000)
            try:
                time.sleep(1)
                started = time.monotonic()
                flood.send()
                assert answer_despite_flood(broker)["status"] == "ok"
                seen = -1
                while flood.answered() != seen and time.monotonic() - started < 60:
                    seen = flood.answered()
                    time.sleep(1)  # until the answers stop coming
                elapsed = time.monotonic() - started
            finally:
                flood.close()
        budget = 2 * (20 + 10 * elapsed)  # commands and busy answers: each a burst of 20 and 10 a second
        assert 20 <= flood.statuses["ok"] and 20 <= flood.statuses["busy"], flood.statuses
        assert set(flood.statuses) == {"ok", "busy"} and flood.answered() <= budget, (flood.statuses, elapsed)
        assert flood.transactions <= set(range(flood.count))
        assert_normal_latency(gauge, f"sqlite:///{db_file}", history)
        assert rss_mib(bridge.pid) - rss_before < 100
        wal = db_file.with_name("spc.db-wal")
        assert not wal.exists() or wal.stat().st_size < 100 * 2**20
        assert "the excess goes unanswered" in bridge.output()
        no_traceback(bridge)
    finally:
        bridge.stop()


def test_retained_request_is_not_answered_after_a_restart(broker: BrokerHandle, tmp_path: Path) -> None:
    """A request published with the retain flag is carried out live, once; after a restart the broker's
    replay of it is ignored (no response, one reject) and cleared, so a second restart sees nothing."""
    db_url = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = start_bridge(broker, tmp_path)
    try:
        with MqttProbe(broker, user=OPERATOR) as operator:
            operator.subscribe(response_topic(OPERATOR, "#"))
            operator.publish(request_topic(OPERATOR, HISTORY_COMMAND),
                             json.dumps({"characteristic_id": SHAFT, "transaction": "live"}), retain=True)
            assert operator.wait_for(response_topic(OPERATOR, HISTORY_COMMAND), 1)
            for restart in (1, 2):
                assert bridge.stop() == 0
                bridge.start()
                gauge_readings(broker, SHAFT_TOPIC, 10.0)  # a reading through: the bridge is subscribed
                wait_until(lambda: query(db_url, "select count(*) from readings")[0][0] == restart, WAIT,
                           "the reading stored")
                time.sleep(0.5)
                assert len(operator.received(response_topic(OPERATOR, HISTORY_COMMAND))) == 1, restart
                assert query(db_url, "select topic, reason from rejects") == [
                    (request_topic(OPERATOR, HISTORY_COMMAND),
                     "retained command ignored: a request is carried out when it is sent, never replayed; "
                     "publish requests without the retain flag")], restart
        no_traceback(bridge)
    finally:
        bridge.stop()
