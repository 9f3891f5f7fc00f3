"""`spc-bridge bench` keeps working: small runs on its own Mosquitto (one with 1 % poison messages; each
other source beside the JSON path) and on its own embedded broker. Not a timed test: it checks that every
figure is there and positive, whatever this machine's speed; the bench itself fails unless the database holds
every good reading once and every poison message as one reject, and nothing else."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.bench import markdown, options, sources
from bridge.bench.poison import KINDS
from tests.processes import REPO

POSITIVE = ("drain_rate", "relay_rate", "ratio", "ceiling_rate", "ceiling_ratio", "live_rate", "relay_live_rate",
            "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "peak_memory_bytes")
POISON = ("poison_messages", "poison_drain_rate", "poison_drain_ratio", "poison_latency_p50_ms",
          "poison_latency_p99_ms", "poison_latency_max_ms", "poison_latency_p50_ratio",
          "poison_latency_p99_ratio")


def _bench(*args: str) -> dict[str, Any]:
    """The JSON of a successful ``spc-bridge bench --quick --json`` run; its progress on stderr."""
    result = subprocess.run([sys.executable, "-m", "bridge", "bench", "--quick", "--json", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[bench" in result.stderr
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def _check_figures(figures: dict[str, Any], broker: str, characteristics: int) -> None:
    """Every figure of the JSON phases is there, and positive where it must be."""
    assert figures["broker"] == broker
    for key in POSITIVE:
        assert figures[key] > 0, (key, figures)
    assert figures["ceiling_ratio"] == pytest.approx(figures["drain_rate"] / figures["ceiling_rate"], rel=0.01)
    # 0 when even the lowest offered rate fell behind, which a slow machine may see in 1 s steps
    assert figures["max_rate"] >= 0 and figures["relay_max_rate"] >= 0
    # a thousand characteristics cost megabytes; a hundred are lost in the noise of the RSS
    assert isinstance(figures["memory_per_characteristic_bytes"], int)
    if characteristics >= 1000:
        assert figures["memory_per_characteristic_bytes"] > 0, figures


def _check_source(figures: dict[str, Any], source: str, per_message: int, backlog: int, drain: str) -> None:
    """The source's drain beside the JSON drain: its messages carried the backlog's readings (the run itself
    checked that every reading was stored once, and no reject)."""
    found = figures["source"]
    assert (found["kind"], found["metrics_per_message"], found["drain"]) == (source, per_message, drain), found
    assert (found["messages"], found["readings"]) == (backlog // per_message, backlog), found
    assert found["json_readings_per_s"] == figures["drain_rate"], figures
    assert found["readings_per_s"] > 0 and found["ratio"] > 0, found


def test_bench_quick_embedded() -> None:
    """Every phase, briefly, on the embedded broker; the JSON has every figure, and the progress line went to
    stderr."""
    figures = _bench("--broker", "embedded", "--characteristics", "100", "--backlog", "500",
                     "--duration", "1", "--gauges", "2")
    _check_figures(figures, "embedded", 100)
    assert not any(key.startswith("poison") for key in figures), figures
    assert "source" not in figures, figures
    # docs/performance.md's table is made from such output: a row per figure, the run's values in its column
    rows = markdown.table([figures], ["run"]).splitlines()
    assert len(rows) == 2 + len(markdown.ROWS), rows
    assert f"| {figures['drain_rate']:,} |" in rows[2 + 2] and f"| {figures['ceiling_rate']:,} |" in rows[2 + 5], rows


def test_the_table_refuses_what_is_not_bench_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bridge.bench.markdown` names the file that is no bench JSON, and why, instead of a traceback."""
    for name, text in (("garbage.json", "not json"), ("other.json", '{"broker": "x"}'), ("list.json", "[1]")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(SystemExit) as stopped:
            markdown.main([str(path)])
        assert stopped.value.code == 2
        assert f"{path}: not the output of `spc-bridge bench --json`" in capsys.readouterr().err


def test_bench_quick_mosquitto_with_sparkplug() -> None:
    """Every phase on Mosquitto, and Sparkplug B beside it: two edge nodes of 300 NDATA each, whose seq wraps
    from 255 to 0."""
    assert options.SOURCES == sources.KINDS
    figures = _bench("--broker", "mosquitto", "--characteristics", "20", "--backlog", "6000",
                     "--duration", "1", "--gauges", "2", "--source", "sparkplug", "--metrics-per-message", "10")
    _check_figures(figures, "mosquitto", 20)
    assert not any(key.startswith("poison") for key in figures), figures
    _check_source(figures, "sparkplug", 10, 6000, "live")


def test_bench_quick_poison_with_kepware() -> None:
    """With 1 % poison the drain and the latency run again; every kind of the catalogue was sent
    (20 in each drain: each gauge's rotation goes round) and the run passed its checks: every good
    reading stored once, every poison message one reject. Kepware IoT Gateway JSON beside it, queued."""
    figures = _bench("--broker", "mosquitto", "--characteristics", "1000", "--backlog", "2000",
                     "--duration", "1", "--gauges", "2", "--poison", "0.01", "--source", "kepware")
    _check_figures(figures, "mosquitto", 1000)
    for key in POISON:
        assert figures[key] > 0, (key, figures)
    assert figures["poison_fraction"] == 0.01
    kinds = figures["poison_kinds"]
    assert isinstance(kinds, dict) and set(kinds) == set(KINDS), figures
    assert sum(kinds.values()) == figures["poison_messages"], figures
    _check_source(figures, "kepware", 100, 2000, "queued")
