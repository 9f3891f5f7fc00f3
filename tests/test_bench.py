"""`spc-bridge bench` keeps working: a tiny run on its own Mosquitto and on the embedded broker
(not a timed test: it only checks that every figure is there and positive)."""

import json
import subprocess
import sys

import pytest

from tests.processes import REPO

KEYS = ("drain_rate", "relay_rate", "ratio", "latency_p50_ms", "latency_p99_ms",
        "memory_per_characteristic_bytes", "live_rate", "max_rate", "peak_memory_bytes")


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_bench_quick_json(broker: str) -> None:
    """A few seconds of every phase; the JSON has every key and positive numbers."""
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "bench", "--quick", "--json", "--broker", broker,
         "--characteristics", "20", "--backlog", "300", "--duration", "1", "--gauges", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    for key in KEYS:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures)
    assert figures["broker"] == broker
    assert "[bench" in result.stderr  # the progress line
