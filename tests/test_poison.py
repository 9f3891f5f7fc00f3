"""The messages that stalled the whole bridge (issue 10) are rejected with their precise reason by
ingest, with the real bridge on both brokers and both databases, while another gauge's readings
go on: each stored once, in order, at normal latency. Limits that are not finite numbers are never
published in monitoring: a baseline that gives them is refused with its reason."""

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.contract import LimitsEvent
from bridge.service import events
from bridge.spc import ChartSpec, Evaluator
from tests.brokers import BrokerHandle, EmbeddedBrokerThread, MqttProbe
from tests.processes import bridge_process
from tests.stream import query, wait_until

CONFIG = """
[[characteristic]]
id = 1
name = "The good gauge"
topic = "t/good"
chart = "imr"
baseline = 5
""" + "".join(f"""
[[characteristic]]
id = {cid}
name = "{topic}"
topic = "{topic}"
chart = "{chart}"
subgroup_size = {size}
baseline = 2
""" for cid, topic, chart, size in ((2, "t/imr", "imr", 1), (3, "t/xbar", "xbar_r", 2), (4, "t/c", "c", 1),
                                    (5, "t/p", "p", 50), (6, "t/u", "u", 10)))
TS_81 = "2026-11-26T10:00:00." + "0" * 60 + "Z"
# (topic, payload, what the reason says): every poison message reproduced in issue 10.
POISON = [
    ("t/imr", b"[" * 5000, "nests arrays or objects more than 32 levels deep"),
    ("t/imr", b"1" + b"0" * 400, "a number of 401 digits is beyond the range of numbers"),
    ("t/imr", b'{"value": 1, "ts": "0001-01-01T00:00:00+01:00"}', "outside the years 1970..9998"),
    ("t/imr", b'{"value": 1, "ts": "9999-12-31T23:59:59-01:00"}', "outside the years 1970..9998"),
    ("t/c", b'{"count": 1e19}', "count must be a whole number in 0..2147483647, got 1e+19"),
    ("t/xbar", b'{"values": [1e160, -1e160]}', "values[0] must be a finite number within ±1e+100"),
    ("t/imr", json.dumps({"value": 1, "ts": TS_81}).encode(), "ts is 81 characters long; at most 64"),
    ("t/p", b'{"count": 1, "n": 2147483648}', "n must be a whole number in 1..2147483647"),
    ("t/u", b'{"count": 3, "n": 2147483648}', "n must be a whole number in 1..2147483647"),
    ("t/c", b'{"count": 9223372036854775808}', "count must be a whole number in 0..2147483647"),
    ("t/imr", b"1e308", "must be a finite number within ±1e+100"),  # with the next: the I-MR baseline
    ("t/imr", b"-1e308", "must be a finite number within ±1e+100"),
]
LATENCY_S = 2.0  # a good reading's sample event after its publication; a stall is forever


@pytest.mark.serial
def test_poison_messages_are_rejected_while_good_readings_go_on(
        broker: BrokerHandle, database: str, tmp_path: Path) -> None:
    """Good, poison, good, ...: one reject per poison with its reason, in the table and on
    spc/bridge/errors; every good reading stored once, in order, each within LATENCY_S."""
    config = tmp_path / "chars.toml"
    config.write_text(CONFIG)
    bridge = bridge_process(tmp_path, broker.url("bridge"), database, config)
    bridge.start()
    try:
        with MqttProbe(broker, "tcp") as probe:
            for topic in ("spc/bridge/errors", "spc/1/sample", "spc/2/limits"):
                probe.subscribe(topic)
            latencies = []

            def good(k: int) -> None:
                start = time.monotonic()
                probe.publish("t/good", json.dumps({"value": 10.0 + k % 3 * 0.1, "seq": k}))
                wait_until(lambda: any(json.loads(m.payload).get("seq") == k
                                       for m in probe.received("spc/1/sample")), 15, f"good reading {k}")
                latencies.append(time.monotonic() - start)

            good(0)
            for k, (topic, payload, _) in enumerate(POISON, 1):
                probe.publish(topic, payload)
                good(k)
            # the I-MR chart whose baseline was 1e308 and -1e308 gets its limits from good readings
            probe.publish("t/imr", b"10.0")
            probe.publish("t/imr", b"11.0")
            wait_until(lambda: any(json.loads(m.payload)["phase"] == "monitoring"
                                   for m in probe.received("spc/2/limits")), 15, "limits of t/imr")
            errors = [json.loads(m.payload) for m in probe.wait_for("spc/bridge/errors", len(POISON), 15)]
        limits = [json.loads(m.payload) for m in probe.received("spc/2/limits")]
        assert bridge.proc is not None and bridge.proc.poll() is None, "the bridge exited"
    finally:
        bridge.stop()

    assert [(e["topic"], e["payload"]) for e in errors] == [
        (topic, payload[:256].decode()) for topic, payload, _ in POISON]
    for error, (_, _, reason) in zip(errors, POISON):
        assert reason in error["reason"], error
    rejects = query(database, "select topic, reason from rejects order by id")
    assert len(rejects) == len(POISON)
    for (topic, stored), (sent, _, reason) in zip(rejects, POISON):
        assert topic == sent and reason in stored, stored
    stored = [seq for seq, in query(database, "select seq from readings where characteristic_id = 1 order by id")]
    assert stored == [str(k) for k in range(len(POISON) + 1)], "good readings lost or doubled"
    assert query(database, "select count(*) from readings where characteristic_id > 2") == [(0,)]
    assert max(latencies) < LATENCY_S, f"good readings waited up to {max(latencies):.2f} s"
    monitoring = limits[-1]
    assert monitoring["phase"] == "monitoring" and monitoring["reason"] is None
    assert None not in (monitoring["ucl"], monitoring["lcl"], monitoring["sigma"])
    assert monitoring["center"] == 10.5


def test_a_refused_baseline_is_published_with_its_reason() -> None:
    """The limits event of a baseline of 1e308 and -1e308: phase baseline, null limits, the reason."""
    evaluator = Evaluator(ChartSpec(chart="imr", baseline=2))
    evaluator.add_values([1e308])
    evaluator.add_values([-1e308])
    event = LimitsEvent.model_validate_json(events.limits_event(2, evaluator))
    assert event.phase == "baseline" and (event.center, event.ucl, event.sigma) == (None, None, None)
    assert event.reason == evaluator.baseline_error and "beyond the range of numbers" in event.reason


def _last_limits(broker: EmbeddedBrokerThread, phase: str) -> dict:
    """The retained limits of characteristic 2 once they are in ``phase`` (bounded wait)."""
    with MqttProbe(broker, "tcp") as probe:
        probe.subscribe("spc/2/limits")
        wait_until(lambda: any(json.loads(m.payload)["phase"] == phase
                               for m in probe.received("spc/2/limits")), 15, f"limits in {phase}")
        return dict(json.loads(probe.received("spc/2/limits")[-1].payload))


def test_stored_limits_that_are_not_finite_are_replaced_by_a_new_baseline(
        embedded_broker: EmbeddedBrokerThread, database: str, tmp_path: Path) -> None:
    """A state saved by an earlier version (limits of infinity, published as null in monitoring):
    the restarted bridge publishes phase baseline with the reason, and new readings set limits."""
    config = tmp_path / "chars.toml"
    config.write_text(CONFIG)
    bridge = bridge_process(tmp_path, embedded_broker.url("bridge"), database, config)
    bridge.start()
    try:
        with MqttProbe(embedded_broker, "tcp") as probe:
            probe.publish("t/imr", b"10.0")
            probe.publish("t/imr", b"11.0")
        _last_limits(embedded_broker, "monitoring")
        assert bridge.stop() == 0
        engine = sa.create_engine(database)
        try:
            with engine.begin() as conn:
                state = json.loads(conn.execute(sa.text(
                    "select state from engine_state where characteristic_id = 2")).scalar_one())
                state["params"] = [10.5, float("inf"), float("inf"), float("inf")]
                conn.execute(sa.text("update engine_state set state = :s where characteristic_id = 2"),
                             {"s": json.dumps(state)})
        finally:
            engine.dispose()
        bridge.start()
        healed = _last_limits(embedded_broker, "baseline")
        assert healed["ucl"] is None and healed["reason"] == (
            "the stored limits are not finite numbers: check the gauge's scaling; a new baseline "
            "starts at sample 2")
        with MqttProbe(embedded_broker, "tcp") as probe:
            probe.publish("t/imr", b"20.0")
            probe.publish("t/imr", b"21.0")
        again = _last_limits(embedded_broker, "monitoring")
        assert again["center"] == 20.5 and again["reason"] is None
    finally:
        bridge.stop()
