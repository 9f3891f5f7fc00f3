"""`spc-bridge bench` keeps working: a small run on its own Mosquitto and on its own embedded broker.
Not a timed test: it checks that every figure is there and positive, whatever this machine's speed."""

import json
import subprocess
import sys

import pytest

from tests.processes import REPO

POSITIVE = ("drain_rate", "relay_rate", "ratio", "live_rate", "relay_live_rate", "latency_p50_ms",
            "latency_p99_ms", "latency_max_ms", "peak_memory_bytes")


@pytest.mark.parametrize(("broker", "characteristics"), [("mosquitto", 1000), ("embedded", 100)])
def test_bench_quick_json(broker: str, characteristics: int) -> None:
    """Every phase, briefly; the JSON has every figure, and the progress line went to stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "bench", "--quick", "--json", "--broker", broker,
         "--characteristics", str(characteristics), "--backlog", "500", "--duration", "1",
         "--gauges", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["broker"] == broker
    for key in POSITIVE:
        assert figures[key] > 0, (key, figures)
    # 0 when even the lowest offered rate fell behind, which a slow machine may see in 1 s steps
    assert figures["max_rate"] >= 0 and figures["relay_max_rate"] >= 0
    # a thousand characteristics cost megabytes; a hundred are lost in the noise of the RSS
    assert isinstance(figures["memory_per_characteristic_bytes"], int)
    if characteristics >= 1000:
        assert figures["memory_per_characteristic_bytes"] > 0, figures
    assert "[bench" in result.stderr
