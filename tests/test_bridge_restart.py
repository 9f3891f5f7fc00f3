"""A restarted bridge resumes where it stopped: limits, rule windows and collected single values."""

from pathlib import Path

from tests.brokers import MqttProbe, MosquittoProcess
from tests.processes import bridge_process
from tests.stream import query
from tests.test_bridge_e2e import payloads, write_config

CONFIG = """
[[characteristic]]
id = 1
name = "Shaft length"
topic = "plant/shaft"
chart = "imr"
baseline = 5

[[characteristic]]
id = 2
name = "Bore diameter"
topic = "plant/bore"
chart = "xbar_r"
subgroup_size = 3
center = 10.0
sigma = 1.0
"""


def test_restart_keeps_limits_windows_and_collected_values(
        mosquitto: MosquittoProcess, database: str, tmp_path: Path) -> None:
    """A nine-point run straddling a restart fires rule 2; two bores before and one after make one subgroup."""
    bridge = bridge_process(tmp_path, mosquitto.url("bridge"), database,
                            write_config(tmp_path, CONFIG))
    with MqttProbe(mosquitto, "tcp") as watcher, MqttProbe(mosquitto, "tcp") as gauge:
        watcher.subscribe("spc/#")
        bridge.start()
        try:
            for value in [10.0, 11.0, 9.0, 10.5, 9.5] + [10.2] * 5:  # baseline, then 5 above
                gauge.publish("plant/shaft", str(value))
            for value in (10.1, 9.9):
                gauge.publish("plant/bore", str(value))
            payloads(watcher, "spc/1/sample", 10)
            limits = payloads(watcher, "spc/1/limits", 2)[1]
            assert bridge.stop() == 0

            bridge.start()
            for value in [10.2] * 4:
                gauge.publish("plant/shaft", str(value))
            gauge.publish("plant/bore", "10.3")
            violations = payloads(watcher, "spc/1/violation", 1)
            assert violations[0]["rule_id"] == 2
            samples = payloads(watcher, "spc/1/sample", 14)
            assert violations[0]["sample_id"] == samples[13]["sample_id"]
            # the limits came back from the database, not from a new baseline
            assert payloads(watcher, "spc/1/limits", 3)[2] == limits
            bore = payloads(watcher, "spc/2/sample", 1)[0]
            assert bore["n"] == 3 and abs(bore["value"] - 10.1) < 1e-9
            assert abs(bore["range"] - 0.4) < 1e-9
        finally:
            bridge.stop()
    assert query(database, "select count(*) from readings where characteristic_id = 2") == [(3,)]
    assert query(database, "select count(*) from samples where characteristic_id = 2") == [(1,)]
