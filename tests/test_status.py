"""Missed samples and the retained status: a characteristic with expected_interval whose gauge falls silent gets a
"Missed sample" violation (rule 100) once per gap, acknowledged like any other, and its retained spc/<id>/status
says where it stands (phase, in control, open violations, last sample, stale, Cpk) without asking for history."""

import json
import time
from pathlib import Path

from bridge.contract import MISSED_SAMPLE_RULE_ID, MISSED_SAMPLE_RULE_NAME, StatusEvent
from tests.brokers import BrokerHandle, MqttProbe
from tests.stream import wait_until
from tests.workflow import WAIT, Engineer, start_workflow_bridge

PRESS = 31
PRESS_TOPIC = "line/press/force"
CONFIG = f"""
[[characteristic]]
id = {PRESS}
name = "Press force"
topic = "{PRESS_TOPIC}"
chart = "imr"
baseline = 5
usl = 12.0
lsl = 8.0
expected_interval = 1.0
interval_tolerance = 0.5
"""


def statuses(probe: MqttProbe) -> list[dict]:
    """The status events of the press so far, each valid by the contract's model."""
    return [StatusEvent.model_validate_json(m.payload).model_dump() for m in probe.received(f"spc/{PRESS}/status")]


def test_a_silent_gauge_is_a_missed_sample_and_the_status_follows(broker: BrokerHandle, tmp_path: Path,
                                                                  role_users: Path) -> None:
    """Status after the baseline; one missed-sample violation per gap, stale meanwhile; acknowledged with a
    reason code; the next reading makes the characteristic live again."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = start_workflow_bridge(broker, tmp_path, db, role_users, CONFIG)
    try:
        with MqttProbe(broker, user="gauge") as gauge, Engineer(broker, "operator") as operator:
            operator.probe.subscribe(f"spc/{PRESS}/+")
            for k, value in enumerate([10.0, 10.2, 9.9, 10.1, 9.8, 10.0]):
                gauge.publish(PRESS_TOPIC, json.dumps({"value": value, "seq": k}))
            wait_until(lambda: any(s["phase"] == "monitoring" and s["cpk"] is not None for s in statuses(operator.probe)),
                       WAIT, "the status after the baseline")
            live = [s for s in statuses(operator.probe) if s["phase"] == "monitoring"][-1]
            assert (live["in_control"], live["open_violations"], live["stale"]) == (True, 0, False), live
            assert live["last_sample_at"] is not None and live["cpk"] > 1, live

            silent = time.monotonic()
            wait_until(lambda: operator.probe.received(f"spc/{PRESS}/violation"), WAIT, "the missed sample")
            assert time.monotonic() - silent >= 1.0
            [missed] = [json.loads(m.payload) for m in operator.probe.received(f"spc/{PRESS}/violation")]
            assert (missed["rule_id"], missed["rule_name"], missed["characteristic_id"]) == (
                MISSED_SAMPLE_RULE_ID, MISSED_SAMPLE_RULE_NAME, PRESS), missed
            wait_until(lambda: statuses(operator.probe)[-1]["stale"], WAIT, "the stale status")
            stale = statuses(operator.probe)[-1]
            assert stale["stale_reason"] == "missed sample: no reading for 1.5 s" and stale["open_violations"] == 1
            time.sleep(2.0)  # a gap is reported once
            assert len(operator.probe.received(f"spc/{PRESS}/violation")) == 1

            acked = operator.ok("ack", {"violation_id": missed["violation_id"], "reason_code": "machine",
                                        "reason": "press stopped for a die change"})
            assert acked["violation_ids"] == [missed["violation_id"]]
            gauge.publish(PRESS_TOPIC, json.dumps({"value": 10.1, "seq": 6}))
            wait_until(lambda: not statuses(operator.probe)[-1]["stale"], WAIT, "live again")
            assert statuses(operator.probe)[-1]["open_violations"] == 0
    finally:
        bridge.stop()
