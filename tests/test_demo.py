"""``spc-bridge demo``: its banner tells the truth, each run starts from a fresh database unless
``--db``, it stops cleanly on Ctrl-C, and its gauges drift and recover in every cycle."""

import json
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bridge.assemble import Assembler
from bridge.config import CharacteristicConfig
from bridge.demo import CYCLE_S, DEFAULT_SEED, DRIFT_S, GAUGES, Gauge, reading
from bridge.ingest import parse_reading
from tests.brokers import HOST, MqttProbe, free_port
from tests.processes import REPO, ChildProcess
from tests.stream import query, wait_until

READY = "Ctrl-C stops it"
TEMPORARY_DB = re.compile(r"data: sqlite:///(\S+) \(temporary")


@dataclass
class DemoBroker:
    """The demo's embedded broker as a handle for MqttProbe."""

    host: str
    port: int
    ws_port: int
    kind: str = "demo"


def _demo(tmp_path: Path, name: str, *options: str) -> tuple[ChildProcess, DemoBroker]:
    """A started demo on free ports, logging to ``name``.log."""
    broker = DemoBroker(HOST, free_port(), free_port())
    demo = ChildProcess(["demo", "--port", str(broker.port), "--ws-port", str(broker.ws_port), "--dashboard-port",
                         str(free_port()), *options],
                        tmp_path / f"{name}.log", READY)
    demo.start()
    return demo, broker


def _banner_command(banner: str, program: str) -> list[str]:
    """The copy-paste command line for ``program`` that the banner prints."""
    line = next(line for line in banner.splitlines() if program in line)
    return shlex.split(line[line.index(program):])


def _samples(db_file: Path) -> set[tuple[int, str]]:
    """(characteristic, receipt time) of every stored sample."""
    return {(cid, ts) for cid, ts in query(f"sqlite:///{db_file}", "SELECT characteristic_id, ts FROM samples")}


def test_banner_commands_work_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    """The banner names every gauge topic; its mosquitto_pub line raises a rule-1 violation seen over TCP and
    WebSockets, its mosquitto_sub line prints events; SIGINT: exit code 0, 'offline', temporary data gone."""
    demo, broker = _demo(tmp_path, "demo")
    try:
        banner = demo.output()
        for gauge in GAUGES:
            assert f"    {gauge.topic} " in banner
        for topic in ("spc/+/sample", "spc/+/violation", "spc/+/limits", "spc/bridge/state"):
            assert topic in banner
        assert f"spc-bridge tail --broker mqtt://{HOST}:{broker.port}" in banner
        assert "(localhost only, no passwords)" in banner  # anonymous, so bound to 127.0.0.1 only
        db_file = Path(TEMPORARY_DB.search(banner).group(1))
        publish = _banner_command(banner, "mosquitto_pub")
        assert publish[publish.index("-p") + 1] == str(broker.port)
        with MqttProbe(broker, "tcp", user=None) as tcp, MqttProbe(broker, "websockets", user=None) as ws:
            for probe in (tcp, ws):
                probe.subscribe("spc/2/#")
                probe.subscribe("spc/bridge/state")
            printed = subprocess.run([*_banner_command(banner, "mosquitto_sub"), "-C", "1", "-W", "20"],
                                     capture_output=True, text=True, timeout=30)
            topic, payload = printed.stdout.split(" ", 1)
            assert topic.startswith("spc/") and json.loads(payload)
            subprocess.run(publish, check=True, capture_output=True, timeout=20)
            value = float(publish[publish.index("-m") + 1])
            wait_until(lambda: any(json.loads(m.payload)["value"] == value for m in tcp.received("spc/2/sample")),
                       20, "the hand-made reading's sample")
            sample = next(json.loads(m.payload) for m in tcp.received("spc/2/sample")
                          if json.loads(m.payload)["value"] == value)
            assert sample["in_control"] is False
            wait_until(lambda: any(json.loads(m.payload)["sample_id"] == sample["sample_id"]
                                   for m in ws.received("spc/2/violation")), 20, "its violation over WebSockets")
            rules = {json.loads(m.payload)["rule_id"] for m in ws.received("spc/2/violation")
                     if json.loads(m.payload)["sample_id"] == sample["sample_id"]}
            assert 1 in rules
            assert db_file.is_file() and _samples(db_file)
            assert demo.stop(signal.SIGINT) == 0
            assert tcp.wait_for("spc/bridge/state", 2)[-1].payload == b"offline"
        assert "stopped" in demo.output()
        assert not db_file.parent.exists()
    finally:
        demo.stop()


def test_each_run_has_a_fresh_database(tmp_path: Path) -> None:
    """Without --db two runs write to different temporary files, share no sample, and each file is deleted
    when its run stops."""
    runs: list[tuple[Path, set[tuple[int, str]]]] = []
    for run in ("first", "second"):
        demo, _ = _demo(tmp_path, run)
        try:
            db_file = Path(TEMPORARY_DB.search(demo.output()).group(1))
            wait_until(lambda: db_file.is_file() and len(_samples(db_file)) >= 20, 30, f"samples of the {run} run")
            runs.append((db_file, _samples(db_file)))
            assert demo.stop(signal.SIGINT) == 0
        finally:
            demo.stop()
        assert not db_file.parent.exists()
    (first_db, first), (second_db, second) = runs
    assert first_db != second_db and not first & second


def test_db_option_keeps_the_data(tmp_path: Path) -> None:
    """With --db the banner says the data is kept, and a second run adds to the samples of the first."""
    db_file = tmp_path / "kept.db"
    stored: set[tuple[int, str]] = set()
    for run in ("first", "second"):
        demo, _ = _demo(tmp_path, run, "--db", f"sqlite:///{db_file}")
        try:
            assert f"data: sqlite:///{db_file} (kept)" in demo.output()
            wait_until(lambda: len(_samples(db_file) - stored) >= 20, 30, f"samples of the {run} run")
            assert demo.stop(signal.SIGINT) == 0
        finally:
            demo.stop()
        now = _samples(db_file)
        assert stored < now
        stored = now


def _verdicts(gauge: Gauge, readings: int, seed: int) -> list[tuple[float, bool | None, set[int]]]:
    """(time in s, in control, rule ids fired) of each sample of the gauge's first readings, through the engine."""
    config = CharacteristicConfig.model_validate(gauge.config)
    assembler = Assembler(config.chart_spec())
    now = datetime.now(timezone.utc)
    verdicts = []
    for k in range(readings):
        for sample in assembler.accept(parse_reading(reading(gauge, k, seed).encode(), now)).completed:
            verdicts += [(e.index * gauge.period_s, e.in_control, {v.rule_id for v in e.violations})
                         for e in sample.evaluations]
    return verdicts


def _longest_in_control_s(verdicts: list[tuple[float, bool | None, set[int]]], period_s: float) -> float:
    longest = current = 0
    for _, in_control, rules in verdicts:
        current = current + 1 if in_control and not rules else 0
        longest = max(longest, current)
    return longest * period_s


def test_drift_and_recovery_recur_in_every_cycle() -> None:
    """Through the real engine, for several seeds: in every cycle of a drifting gauge its drift fires the run
    rule (2) and rule 1, and then it has a stretch of at least 15 s in control (the old demo drifted for ever)."""
    cycles = 5
    drifting = [g for g in GAUGES if g.drift_start_s is not None]
    assert drifting
    for seed in (DEFAULT_SEED, 1, 2, 3):
        for gauge in drifting:
            assert gauge.drift_start_s is not None
            verdicts = _verdicts(gauge, round((gauge.drift_start_s + cycles * CYCLE_S) / gauge.period_s), seed)
            for cycle in range(cycles):
                start = gauge.drift_start_s + cycle * CYCLE_S
                recovered = start + DRIFT_S + 2.0  # rules whose window still holds drifted points settle
                drift = [v for v in verdicts if start <= v[0] < start + DRIFT_S]
                calm = [v for v in verdicts if recovered <= v[0] < start + CYCLE_S]
                where = f"seed {seed}, {gauge.topic}, cycle {cycle}"
                fired = set().union(*(rules for _, _, rules in drift))
                assert {1, 2} <= fired, f"{where}: drift fired {sorted(fired)}"
                assert _longest_in_control_s(calm, gauge.period_s) >= 15.0, where


def test_readme_describes_the_cycle() -> None:
    """README's account of the demo's drift is the one the code runs."""
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"drift for {DRIFT_S:.0f} s every {CYCLE_S / 60:g} minutes" in readme


def test_gitignore_covers_sqlite_side_files() -> None:
    """A database kept with --db leaves no untracked files behind: SQLite's journal, WAL and shared memory."""
    names = ["spc-demo.db", "spc-demo.db-journal", "spc-demo.db-wal", "spc-demo.db-shm", "data/kept.db-wal"]
    ignored = subprocess.run(["git", "check-ignore", *names], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert ignored.stdout.split() == names


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    """A taken port: exit code 2 and one line that names the port."""
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "demo", "--port", str(port), "--ws-port",
             str(free_port()), "--db", f"sqlite:///{tmp_path / 'demo.db'}"],
            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and str(port) in result.stderr
    assert "already in use" in result.stderr
