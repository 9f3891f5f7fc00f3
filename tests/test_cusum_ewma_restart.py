"""CUSUM and EWMA charts through the real bridge: the published examples over MQTT, with the bridge
restarted mid-series, give the sums and z of one uninterrupted run exactly; their configuration
keys and what the file refuses; bench-engine on them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_characteristics
from bridge.spc import ChartSpec, Evaluator
from tests.brokers import MqttProbe, MosquittoProcess
from tests.processes import bridge_process
from tests.spc.test_reference import CUSUM, EWMA, assert_printed, dataset
from tests.stream import query
from tests.test_bridge_e2e import payloads, write_config

# Montgomery Example 9.1 (mu0 10, sigma 1, k 0.5, h 5) and NIST e-Handbook 6.3.2.4 (EWMA0 50,
# s 2.0539, lambda 0.3, L 3), as in tests/spc/test_reference.py.
CONFIG = """
[[characteristic]]
id = 1
name = "Montgomery 9.1"
topic = "plant/cusum"
chart = "cusum"
center = 10.0
sigma = 1.0
k = 0.5
h = 5

[[characteristic]]
id = 2
name = "NIST 6.3.2.4"
topic = "plant/ewma"
chart = "ewma"
center = 50.0
sigma = 2.0539
lambda = 0.3
L = 3
"""
CUSUM_SPEC = ChartSpec(chart="cusum", center=10.0, sigma=1.0, k=0.5, h=5.0)
EWMA_SPEC = ChartSpec(chart="ewma", center=50.0, sigma=2.0539, lambda_=0.3, L=3.0)


def test_sums_and_ewma_continue_exactly_across_a_restart(
        mosquitto: MosquittoProcess, database: str, tmp_path: Path) -> None:
    """Half of each series, a restart, the other half: every C+, C-, z and limit equals one run's,
    C+ matches Montgomery's table, the signal is at period 29, the limits say what to plot."""
    xs = dataset(CUSUM)["data"]["x"]
    zs = dataset(EWMA)["data"]["x"]
    bridge = bridge_process(tmp_path, mosquitto.url("bridge"), database, write_config(tmp_path, CONFIG))
    with MqttProbe(mosquitto, "tcp") as watcher, MqttProbe(mosquitto, "tcp") as gauge:
        watcher.subscribe("spc/#")
        bridge.start()
        try:
            for x in xs[:15]:
                gauge.publish("plant/cusum", repr(x))
            for z in zs[:10]:
                gauge.publish("plant/ewma", repr(z))
            payloads(watcher, "spc/1/sample", 15)
            payloads(watcher, "spc/2/sample", 10)
            assert bridge.stop() == 0
            bridge.start()
            for x in xs[15:]:
                gauge.publish("plant/cusum", repr(x))
            for z in zs[10:]:
                gauge.publish("plant/ewma", repr(z))
            cusum = payloads(watcher, "spc/1/sample", len(xs))
            ewma = payloads(watcher, "spc/2/sample", len(zs))
            (violation,) = payloads(watcher, "spc/1/violation", 1)
            cusum_limits = payloads(watcher, "spc/1/limits", 2)[-1]
            ewma_limits = payloads(watcher, "spc/2/limits", 2)[-1]
        finally:
            bridge.stop()

    one_run = Evaluator(CUSUM_SPEC)
    whole = [e for x in xs for e in one_run.add_values([x])]
    assert [(s["cusum_upper"], s["cusum_lower"]) for s in cusum] == [
        (e.cusum_upper, e.cusum_lower) for e in whole]
    published = dataset(CUSUM)["expected"]["cusum_upper_periods_1_to_29"]["value"]
    for period, (sample, value) in enumerate(zip(cusum, published), 1):
        assert_printed(sample["cusum_upper"], f"{value:.2f}", f"Montgomery 9.1 C+ of period {period}")
    assert violation["sample_id"] == cusum[28]["sample_id"]
    assert (violation["rule_name"], violation["chart"]) == ("CUSUM upper", "cusum")
    assert (cusum_limits["statistic"], cusum_limits["center"], cusum_limits["ucl"],
            cusum_limits["lcl"]) == ("cusum", 0.0, 5.0, -5.0)
    assert "ewma" not in cusum[0] and "ucl" not in cusum[0]

    one_run = Evaluator(EWMA_SPEC)
    expected = [e for z in zs for e in one_run.add_values([z])]
    assert [(s["ewma"], s["ucl"], s["lcl"]) for s in ewma] == [
        (e.ewma, e.limits.ucl, e.limits.lcl) for e in expected if e.limits is not None]
    assert "cusum_upper" not in ewma[0] and all(s["in_control"] for s in ewma)
    assert ewma_limits["statistic"] == "ewma"
    assert_printed(ewma_limits["ucl"], "52.5884", "NIST 6.3.2.4 UCL", 1e-4)
    stored = query(database, "select cusum_upper from samples where characteristic_id = 1 order by idx")
    assert [row[0] for row in stored] == [s["cusum_upper"] for s in cusum]


def test_config_keys_reach_the_chart(tmp_path: Path) -> None:
    """The file's k, h, lambda, L, fir, reset_after_signal become the engine's options."""
    text = CONFIG.replace("h = 5", "h = 4\nfir = true\nreset_after_signal = true")
    cusum, ewma = load_characteristics(write_config(tmp_path, text))
    assert cusum.chart_spec() == ChartSpec(chart="cusum", center=10.0, sigma=1.0, k=0.5, h=4.0,
                                           fir=True, reset_after_signal=True)
    assert ewma.chart_spec() == EWMA_SPEC and ewma.subgroup_size == 1


@pytest.mark.parametrize(("extra", "message"), [
    ('rules = "nelson"', "rules: the Nelson rules do not apply to a cusum chart"),
    ("dispersion_rules = [1]", "dispersion_rules: the Nelson rules do not apply to a cusum chart"),
    ("lambda = 0.2", "lambda applies to ewma charts only, not to cusum"),
    ("h = 0", "h must be a number > 0"),
])
def test_config_refuses_what_a_cusum_chart_cannot_use(tmp_path: Path, extra: str, message: str) -> None:
    """Rules and the other chart's options are refused, naming the key and what to do."""
    text = CONFIG.split("[[characteristic]]")[1].replace("h = 5\n", "")
    with pytest.raises(ConfigError, match=message):
        load_characteristics(write_config(tmp_path, f"[[characteristic]]{text}{extra}\n"))


def test_bench_engine_measures_the_memory_charts() -> None:
    """``spc-bridge bench-engine --chart cusum|ewma`` reports evaluations per second."""
    for chart in ("cusum", "ewma"):
        done = subprocess.run([sys.executable, "-m", "bridge", "bench-engine", "--chart", chart,
                               "--points", "2000", "--json"], capture_output=True, text=True,
                              timeout=60, check=True)
        report = json.loads(done.stdout)
        assert report["chart"] == chart and report["points"] == 2000
        assert report["evaluations_per_second"] > 0
