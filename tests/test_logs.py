"""What ``spc-bridge run`` logs, run for real: a start-up summary, connection changes in words, rejects (as many as
are kept in full), slow batches, a shutdown summary, JSON lines on request, and never a password."""

import json
import logging
import re
import signal
import sqlite3
import threading
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import pytest

from bridge.config import CharacteristicConfig
from bridge.contract import sample_topic
from bridge.service.messages import Inbound
from bridge.service.pipeline import Pipeline
from bridge.service.reject_limits import FULL_PER_WINDOW, RejectLimiter
from bridge.store.queries import create_tables, open_database
from tests.brokers import HOST, BrokerHandle, EmbeddedBrokerThread, MqttProbe, free_port
from tests.dashboards import SHAFT, SHAFT_TOPIC, gauge_readings, start_bridge, wait_for_log
from tests.processes import ChildProcess, bridge_process
from tests.stream import write_config

BROKER_SECRET = "Broker-Secret-4711"
DB_SECRET = "Db-Secret-0815"
JSON_FIELDS = {"ts", "level", "logger", "message"}


def test_start_rejects_and_stop_are_logged(broker: BrokerHandle, tmp_path: Path) -> None:
    """The start-up line names the version, the masked broker, the database, the charts and the subscriptions;
    the first FULL_PER_WINDOW rejects of a topic are logged at WARNING with their reason, the rest only counted;
    the shutdown line counts what was stored, rejected and published."""
    bridge = start_bridge(broker, tmp_path)
    try:
        with MqttProbe(broker, user="dashboard") as samples, MqttProbe(broker, user="gauge") as gauge:
            samples.subscribe(sample_topic(SHAFT))
            for value in ("10.0", "10.5", "9.5"):
                gauge.publish(SHAFT_TOPIC, value)
            for k in range(FULL_PER_WINDOW + 5):
                gauge.publish(SHAFT_TOPIC, f"bad reading {k}")
            gauge.publish(SHAFT_TOPIC, "10.2")  # its sample comes after every reject
            assert len(samples.wait_for(sample_topic(SHAFT), 4, timeout=30)) == 4
        assert bridge.stop() == 0
    finally:
        bridge.stop()
    log = bridge.output()
    assert (f"INFO bridge.service.runner: spc-bridge {version('spc-bridge')} starting: broker "
            f"mqtt://bridge:***@{HOST}:{broker.port} as bridge:test, database sqlite:///{tmp_path / 'spc.db'}, "
            "2 characteristics (imr 2), subscribing to line/#, spc/bridge/request/+/+") in log
    rejects = re.findall(r"WARNING bridge\.service\.rejects: reject on line/shaft: (.*)", log)
    assert len(rejects) == FULL_PER_WINDOW and all("bad reading" in reason or "number" in reason for reason in rejects)
    stopped = re.search(r"stopped: (\d+) readings stored, 0 duplicates dropped, (\d+) rejects, (\d+) events published",
                        log)
    assert stopped is not None, log
    assert [int(n) for n in stopped.groups()[:2]] == [4, FULL_PER_WINDOW + 5]
    assert int(stopped.group(3)) >= 4 + FULL_PER_WINDOW  # a sample per reading, an error per reject kept in full


def test_the_count_of_suppressed_rejects_is_logged_when_the_window_ends(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Past a topic's full rejects, one line counts the rest once its window is over (the summary reject)."""
    config = CharacteristicConfig.model_validate({"id": 1, "name": "Shaft", "topic": "line/shaft", "chart": "imr"})
    engine = open_database(f"sqlite:///{tmp_path / 'spc.db'}")
    create_tables(engine)
    pipeline = Pipeline(engine, "bridge", [config])
    pipeline.start()
    pipeline.reject_limits = RejectLimiter(full_per_window=2, window_s=0.2)

    def message(payload: bytes) -> Inbound:
        return Inbound("line/shaft", payload, datetime.now(timezone.utc), None)

    with caplog.at_level(logging.WARNING, "bridge.service.rejects"):
        pipeline.process([message(b"oops") for _ in range(5)])
        time.sleep(0.3)
        pipeline.process([message(b"10.0")])
    lines = [r for r in caplog.records if r.getMessage().startswith("reject on line/shaft")]
    assert len(lines) == 3 and all(r.levelno == logging.WARNING and r.topic == "line/shaft" for r in lines)
    assert lines[2].reason.startswith("3 more rejects on this topic were counted but not stored")


@pytest.mark.serial
def test_a_slow_batch_is_logged(embedded_broker: EmbeddedBrokerThread, tmp_path: Path) -> None:
    """A batch that waits over a second for the database (another writer holds SQLite's lock) is a WARNING with its
    size and duration."""
    bridge = start_bridge(embedded_broker, tmp_path)
    try:
        holder = sqlite3.connect(tmp_path / "spc.db", isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(1.5, holder.execute, ("COMMIT",))
        release.start()
        gauge_readings(embedded_broker, SHAFT_TOPIC, 10.0)
        release.join(10)
        holder.close()
        log = wait_for_log(bridge, "to evaluate and commit")
        assert re.search(r"WARNING bridge\.service\.runner: a batch of 1 messages took 1\.\d s to evaluate and commit "
                         r"\(over 1 s\)", log), log
    finally:
        bridge.stop()


def _lines(log: str, log_format: str) -> list[str]:
    """The messages of a log, each line checked: JSON objects with the stable fields, or text."""
    if log_format == "text":
        return log.splitlines()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all(JSON_FIELDS <= entry.keys() for entry in entries), entries
    return [entry["message"] for entry in entries]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_failures_are_logged_in_words_and_without_secrets(embedded_broker: EmbeddedBrokerThread, tmp_path: Path,
                                                          log_format: str) -> None:
    """A refused login, an unreachable PostgreSQL server and a PostgreSQL database that does not exist, with
    passwords in both URLs and debug logging on: words for each, in the chosen format, never a password."""
    wrong = embedded_broker.url("bridge").replace("bridge-password", BROKER_SECRET)
    config = write_config(tmp_path)
    options = ("-v", "--log-format", log_format)
    refused = bridge_process(tmp_path, wrong, f"sqlite:///{tmp_path / 'spc.db'}", config, "bridge", *options)
    refused.ready_line = "next attempt in 2 s"
    unreachable = ChildProcess(
        ["run", "--broker", wrong, "--db", f"postgresql://postgres:{DB_SECRET}@127.0.0.1:{free_port()}/spc",
         "--config", str(config), *options], tmp_path / "unreachable.log", "next attempt in 2 s")
    missing = ChildProcess(
        ["run", "--broker", wrong, "--db", f"postgresql://postgres:{DB_SECRET}@127.0.0.1:5432/spc_missing_db",
         "--config", str(config), *options], tmp_path / "missing.log", "spc_missing_db")
    for process in (refused, unreachable, missing):
        process.start()
        code = process.stop(signal.SIGTERM)
        assert code == (2 if process is missing else 0), process.output()
    for process in (refused, unreachable, missing):
        assert BROKER_SECRET not in process.output() and DB_SECRET not in process.output(), process.output()
        assert "Unspecified error" not in process.output()
    said = "\n".join(_lines(refused.output(), log_format))
    assert ("the broker at mqtt://bridge:***@127.0.0.1:" in said and "refused the login of user bridge: not "
            "authorized; check the password" in said and "next attempt in 1 s" in said), said
    assert "database postgresql+psycopg://postgres:***@127.0.0.1:" in "\n".join(_lines(unreachable.output(),
                                                                                          log_format))
    assert 'database "spc_missing_db" does not exist' in "\n".join(_lines(missing.output(), log_format))


def test_json_lines_carry_the_fields_of_a_reject(embedded_broker: EmbeddedBrokerThread, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """SPC_BRIDGE_LOG_FORMAT=json: every line an object; a reject's has its topic and reason as fields."""
    monkeypatch.setenv("SPC_BRIDGE_LOG_FORMAT", "json")
    bridge = start_bridge(embedded_broker, tmp_path)
    try:
        with MqttProbe(embedded_broker, user="gauge") as gauge:
            gauge.publish(SHAFT_TOPIC, "twelve")
        wait_for_log(bridge, "reject on")
    finally:
        bridge.stop()
    entries = [json.loads(line) for line in bridge.output().splitlines()]
    reject = next(e for e in entries if e["message"].startswith("reject on"))
    assert reject["level"] == "warning" and reject["logger"] == "bridge.service.rejects"
    assert reject["topic"] == SHAFT_TOPIC and reject["reason"] and reject["ts"].endswith("+00:00")
    assert any(e["message"].startswith("stopped: ") and e["stored"] == 0 for e in entries)
