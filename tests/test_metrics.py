"""``--metrics-port``: Prometheus metrics and /healthz of a running bridge and gateway, scraped over HTTP while
known readings stream through a real Mosquitto into SQLite and PostgreSQL; counters compared with what was sent."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.ingest import IngestError, parse_reading
from bridge.service.listener import REJECT_CLASSES, ingest_class
from tests.brokers import MosquittoProcess, MqttProbe, free_port
from tests.conftest import POSTGRES_ADMIN
from tests.dashboards import (
    BORE_TOPIC, SHAFT, SHAFT_CONFIG, SHAFT_TOPIC, GatewayProcess, SeedClient, acknowledge, start_bridge,
)
from tests.processes import REPO, ChildProcess, bridge_process
from tests.stream import query

WAIT = 30.0
UNKNOWN_TOPIC = "line/nowhere"
# The shaft has fixed limits (monitoring from the first reading); the bore collects a baseline of 50.
CONFIG = SHAFT_CONFIG + f"""
[[characteristic]]
id = 2
name = "Bore"
topic = "{BORE_TOPIC}"
chart = "imr"
baseline = 50
"""
GOOD_SHAFT, OUTLIERS, GOOD_BORE, RESENT = 30, 3, 10, 5
NOT_JSON = [b"{", b"value=10.2", b"\xff\xfe", b"[1,"]
BAD_VALUE = [b'{"value": "ten"}', b'{"value": true}', b'{"values": []}']
UNKNOWN = [b"10.0", b"11.0"]


def scrape(port: int) -> dict[str, float]:
    """Every sample of /metrics by name and labels, e.g. ``spc_bridge_rejects_total{reason="not_json"}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def health(port: int) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of /healthz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def metered_bridge(mosquitto: MosquittoProcess, database: str, tmp_path: Path) -> Iterator[tuple[ChildProcess, int]]:
    """The bridge on Mosquitto and ``database`` with ``--metrics-port``, started; with the port."""
    config = tmp_path / "chars.toml"
    config.write_text(CONFIG)
    port = free_port()
    bridge = bridge_process(tmp_path, mosquitto.url("bridge"), database, config, "bridge:test",
                            "--metrics-port", str(port))
    bridge.start()
    try:
        yield bridge, port
    finally:
        bridge.stop()


def test_counters_match_the_stream_and_healthz_follows_the_broker(
        mosquitto: MosquittoProcess, database: str, metered_bridge: tuple[ChildProcess, int]) -> None:
    """Readings received, stored, duplicate and rejected by class, batches, latency, events, outbox, phases and
    open violations equal what was sent; /healthz is 200, 503 naming the broker while it is stopped, 200 again."""
    bridge, port = metered_bridge
    wait_for(lambda: health(port)[0] == 200, "a healthy bridge")
    assert health(port) == (200, {"status": "ok"})
    before = scrape(port)
    assert before["spc_bridge_readings_received_total"] == 0
    assert before['spc_bridge_characteristics{phase="baseline"}'] == 1
    assert before['spc_bridge_characteristics{phase="monitoring"}'] == 1

    shaft = [json.dumps({"value": 10.0 + (k % 5) / 10, "seq": f"s-{k}"}) for k in range(GOOD_SHAFT)]
    for k in range(OUTLIERS):  # rule 1, beyond 3 sigma: each between good readings, so each is a violation
        shaft.insert(5 + 10 * k, json.dumps({"value": 20.0, "seq": f"out-{k}"}))
    with MqttProbe(mosquitto, user="gauge") as gauge:
        for k, body in enumerate(shaft):
            gauge.publish(SHAFT_TOPIC, body)
            if k == GOOD_SHAFT // 2:
                during = scrape(port)  # mid-stream: a scrape neither stalls nor disturbs the bridge
        for k in range(GOOD_BORE):
            gauge.publish(BORE_TOPIC, json.dumps({"value": 5.0 + k / 10, "seq": f"b-{k}"}))
        for body in shaft[:RESENT]:
            gauge.publish(SHAFT_TOPIC, body)  # the same seq and value again: duplicates
        for body in NOT_JSON + BAD_VALUE:
            gauge.publish(SHAFT_TOPIC, body)
        for body in UNKNOWN:
            gauge.publish(UNKNOWN_TOPIC, body)
    sent = len(shaft) + GOOD_BORE + RESENT + len(NOT_JSON) + len(BAD_VALUE) + len(UNKNOWN)
    assert during["spc_bridge_readings_received_total"] <= sent

    wait_for(lambda: scrape(port)["spc_bridge_readings_received_total"] == sent, "every reading counted")
    violations = [row[0] for row in query(database, "select id from violations order by id")]
    assert len(violations) == OUTLIERS
    wait_for(lambda: scrape(port)["spc_bridge_open_violations"] == OUTLIERS, "the open violations")
    assert acknowledge(mosquitto, violations[0], "gauge re-zeroed")["status"] == "ok"
    wait_for(lambda: scrape(port)["spc_bridge_open_violations"] == OUTLIERS - 1, "the acknowledgement")
    wait_for(lambda: scrape(port)["spc_bridge_outbox_depth"] == 0, "the outbox drained")

    after = scrape(port)
    stored = len(shaft) + GOOD_BORE
    assert after["spc_bridge_readings_stored_total"] == stored
    assert query(database, "select count(*) from readings")[0][0] == stored
    assert after["spc_bridge_readings_duplicate_total"] == RESENT
    assert after["spc_bridge_commands_received_total"] == 1
    expected = {"not_json": len(NOT_JSON), "bad_value": len(BAD_VALUE), "unknown_topic": len(UNKNOWN)}
    for kind in REJECT_CLASSES:
        assert after[f'spc_bridge_rejects_total{{reason="{kind}"}}'] == expected.get(kind, 0), kind
    # the classes only: neither a topic nor a client's text became a label
    assert {name for name in after if name.startswith("spc_bridge_rejects_total")} == {
        f'spc_bridge_rejects_total{{reason="{kind}"}}' for kind in REJECT_CLASSES}
    # every message of a committed batch is in one batch and has one latency
    assert after["spc_bridge_batch_size_sum"] == sent + 1
    assert after["spc_bridge_receipt_to_commit_seconds_count"] == sent + 1
    assert after["spc_bridge_commit_seconds_count"] == after["spc_bridge_batch_size_count"] >= 1
    assert 0 < after["spc_bridge_receipt_to_commit_seconds_sum"] < 60 * (sent + 1)
    # a sample event per stored reading, the violations, a reject event each, the ack and its response
    assert after["spc_bridge_events_published_total"] >= stored + OUTLIERS + sum(expected.values()) + 2
    assert after['spc_bridge_characteristics{phase="baseline"}'] == 1
    assert after["spc_bridge_broker_connected"] == 1

    mosquitto.stop()
    wait_for(lambda: health(port)[0] == 503, "/healthz 503 without the broker")
    status, body = health(port)
    assert body["status"] == "unhealthy" and "broker: not connected" in body["reasons"], body
    assert scrape(port)["spc_bridge_broker_connected"] == 0
    mosquitto.start()
    wait_for(lambda: health(port)[0] == 200, "/healthz 200 with the broker back", timeout=60)
    assert scrape(port)["spc_bridge_readings_received_total"] == sent


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_healthz_names_an_unreachable_database(database: str, metered_bridge: tuple[ChildProcess, int]) -> None:
    """While PostgreSQL refuses connections to the bridge's database, /healthz is 503 and says so; 200 after."""
    _, port = metered_bridge
    wait_for(lambda: health(port)[0] == 200, "a healthy bridge")
    name = database.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            wait_for(lambda: health(port)[0] == 503, "/healthz 503 without the database")
            assert "database: unreachable (OperationalError)" in health(port)[1]["reasons"]
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    wait_for(lambda: health(port)[0] == 200, "/healthz 200 with the database back")


def _occupied() -> tuple[socket.socket, int]:
    """A listening socket on a free loopback port, and the port."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, holder.getsockname()[1]


@pytest.mark.parametrize(("command", "env"), [
    ("run", None), ("run", "SPC_BRIDGE_METRICS_PORT"), ("gateway", None), ("gateway", "SPC_BRIDGE_GATEWAY_METRICS_PORT"),
])
def test_a_metrics_port_in_use_is_one_line_and_a_failure(tmp_path: Path, command: str, env: str | None) -> None:
    """Both commands, given the port as an option or in their environment variable, exit non-zero with one
    line naming the port, before connecting to anything."""
    config = tmp_path / "chars.toml"
    config.write_text(CONFIG)
    holder, port = _occupied()
    options = ["--config", str(config), "--db", f"sqlite:///{tmp_path / 'spc.db'}"] if command == "run" else []
    given = {env: str(port)} if env is not None else {}
    with holder:
        result = subprocess.run([sys.executable, "-m", "bridge", command, "--broker", f"mqtt://127.0.0.1:{free_port()}",
                                 *options, *([] if env is not None else ["--metrics-port", str(port)])],
                                cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, **given})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [f"spc-bridge: metrics port {port} on 127.0.0.1 is already in use: stop what listens there "
                     "or choose another --metrics-port"], result.stderr


def test_gateway_metrics_and_healthz(mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    """Connections, subscriptions, events received and messages sent of a gateway with one dashboard; /healthz
    follows the broker."""
    bridge = start_bridge(mosquitto, tmp_path)
    port = free_port()
    gateway = GatewayProcess(tmp_path, mosquitto, "--metrics-port", str(port))
    gateway.start()
    try:
        wait_for(lambda: health(port)[0] == 200, "a healthy gateway")
        assert scrape(port)["spc_gateway_connections"] == 0

        async def dashboard() -> None:
            client = await SeedClient.open(gateway.url())
            await client.request({"type": "subscribe", "characteristic_ids": [SHAFT, 2]}, "subscribed")
            metrics = await asyncio.to_thread(scrape, port)
            assert metrics["spc_gateway_connections"] == 1 and metrics["spc_gateway_subscriptions"] == 2
            with MqttProbe(mosquitto, user="gauge") as gauge:
                await asyncio.to_thread(gauge.publish, SHAFT_TOPIC, "10.5")
            await client.until("sample", value=10.5)
            await client.close()

        asyncio.run(dashboard())
        wait_for(lambda: scrape(port)["spc_gateway_connections"] == 0, "the dashboard gone")
        metrics = scrape(port)
        assert metrics["spc_gateway_subscriptions"] == 0
        assert metrics["spc_gateway_events_received_total"] >= 1
        assert metrics["spc_gateway_messages_sent_total"] >= 2  # the subscribed answer and the sample
        assert metrics["spc_gateway_messages_dropped_total"] == 0
        assert metrics["spc_gateway_broker_connected"] == 1

        mosquitto.stop()
        wait_for(lambda: health(port)[0] == 503, "/healthz 503 without the broker")
        assert health(port)[1] == {"status": "unhealthy", "reasons": ["broker: not connected"]}
        mosquitto.start()
        wait_for(lambda: health(port)[0] == 200, "/healthz 200 with the broker back", timeout=60)
    finally:
        assert gateway.stop() == 0
        bridge.stop()


@pytest.mark.parametrize(("payload", "kind"), [
    (b"", "empty"), (b"1" * 70_000, "too_large"), (b"{", "not_json"), (b"[" * 100 + b"]" * 100, "not_json"),
    (b'{"value": 1, "ts": "yesterday"}', "bad_ts"), (b'{"value": 1, "seq": ""}', "bad_seq"),
    (b'{"value": "ten"}', "bad_value"), (b'{"count": -1}', "bad_value"),
])
def test_each_ingest_reason_has_its_class(payload: bytes, kind: str) -> None:
    """The class of bridge.ingest's reason for each kind of bad payload (a reason of a new wording would fall
    into bad_value: this shows it)."""
    with pytest.raises(IngestError) as error:
        parse_reading(payload, datetime.now(timezone.utc))
    assert ingest_class(str(error.value)) == kind
