"""The bridge as a Sparkplug B host application, driven by Eclipse Tahu's JavaScript edge node (tests.sparkplug_peer)
on both brokers and both databases: births and data by alias, a restart with a new bdSeq, a skipped seq answered
with a rebirth request, deaths marking characteristics stale, and every value stored once."""

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.sparkplug.payload import REBIRTH_METRIC
from tests.brokers import BrokerHandle, MosquittoProcess, MqttProbe
from tests.credentials import password
from tests.processes import ChildProcess, bridge_process
from tests.sparkplug_peer import EdgeNode, metric, now_ms
from tests.stream import query, wait_until

CONFIG = """
[[characteristic]]
id = 1
name = "Bore diameter, gauge 7"
chart = "imr"
baseline = 5
sparkplug = { group_id = "Plant1", edge_node_id = "Line3", device_id = "Gauge7", metric = "Bore/Diameter" }

[[characteristic]]
id = 2
name = "Spindle offset, line 3"
chart = "imr"
baseline = 5
sparkplug = { group_id = "Plant1", edge_node_id = "Line3", metric = "Spindle/Offset" }
"""
NODE_METRICS = [metric(0, "Int32", name="Spindle/Offset", alias=1)]
DEVICE_METRICS = [metric(74.0, "Double", name="Bore/Diameter", alias=2)]
STATE = "spBv1.0/STATE/bridge"
WAIT = 20.0


class Cell:
    """A broker, the bridge as Sparkplug host, an admin probe on spc/# and the STATE topic, and the edge node."""

    def __init__(self, broker: BrokerHandle, bridge: ChildProcess, db: str, probe: MqttProbe) -> None:
        self.broker, self.bridge, self.db, self.probe = broker, bridge, db, probe

    def edge(self) -> EdgeNode:
        """Tahu's edge node Plant1/Line3, logged in as the edge user (connected on entering its block)."""
        return EdgeNode(self.broker.url(None), "edge", password("edge"), "edge:line3", "Plant1", "Line3")

    def readings(self, cid: int) -> list[tuple]:
        """The stored readings of characteristic ``cid``: (ts, measurements), in order."""
        return query(self.db, f"select ts, measurements from readings where characteristic_id = {cid} order by id")

    def statuses(self, cid: int) -> list[dict]:
        """The status events of ``cid`` received so far."""
        return [json.loads(m.payload) for m in self.probe.received(f"spc/{cid}/status")]

    def wait_status(self, cid: int, count: int, stale: bool) -> dict:
        """The ``count``-th status event of ``cid``, which must say ``stale``."""
        wait_until(lambda: len(self.statuses(cid)) >= count, WAIT, f"status event {count} of {cid}")
        status = self.statuses(cid)[count - 1]
        assert status["characteristic_id"] == cid and status["stale"] is stale, status
        return status


@pytest.fixture
def cell(broker: BrokerHandle, database: str, tmp_path: Path) -> Iterator[Cell]:
    """The bridge running with the Sparkplug characteristics, online as host ``bridge``."""
    config = tmp_path / "sparkplug.toml"
    config.write_text(CONFIG)
    bridge = bridge_process(tmp_path, broker.url("bridge"), database, config, "bridge:test",
                            "--sparkplug-reorder-timeout", "1")
    with MqttProbe(broker, user="admin") as probe:
        probe.subscribe("spc/#")
        probe.subscribe(STATE)
        bridge.start()
        try:
            wait_until(lambda: any(json.loads(m.payload).get("online") for m in probe.received(STATE)), WAIT,
                       "the host's STATE online")
            yield Cell(broker, bridge, database, probe)
        finally:
            bridge.stop()


def _born(cell: Cell, edge: EdgeNode) -> None:
    edge.nbirth(NODE_METRICS)
    edge.dbirth("Gauge7", DEVICE_METRICS)
    cell.wait_status(1, 2, stale=False)
    cell.wait_status(2, 2, stale=False)


def test_every_characteristic_is_stale_until_its_birth(cell: Cell) -> None:
    """At start no node is born yet: the retained status says so, whatever an earlier run left."""
    for cid in (1, 2):
        assert cell.wait_status(cid, 1, stale=True)["stale_reason"] == "no birth since the bridge started"


def test_births_data_by_alias_and_deaths(cell: Cell) -> None:
    """Data by alias becomes samples (an Int32 keeps its sign); NDEATH and DDEATH make the characteristics stale,
    a new birth live again; births' own values are not readings."""
    with cell.edge() as edge:
        _born(cell, edge)
        start = now_ms() - 10_000
        for i in range(6):
            edge.ddata("Gauge7", [metric(74.0 + i / 100, "Double", alias=2, timestamp=start + i)])
        edge.ndata([metric(-5, "Int32", alias=1, timestamp=start)])
        samples = cell.probe.wait_for("spc/1/sample", 6, timeout=WAIT)
        assert [json.loads(m.payload)["value"] for m in samples] == [74.0 + i / 100 for i in range(6)]
        offset = json.loads(cell.probe.wait_for("spc/2/sample", 1, timeout=WAIT)[0].payload)
        assert offset["value"] == -5.0 and offset["timestamp"].endswith("Z")
        assert len(cell.readings(1)) == 6 and len(cell.readings(2)) == 1  # births' values are not readings
        edge.ddeath("Gauge7")
        assert "DDEATH" in cell.wait_status(1, 3, stale=True)["stale_reason"]
        assert len(cell.statuses(2)) == 2  # the node lives on
        edge.kill()  # the broker publishes the NDEATH will, whose bdSeq matches the birth
        assert "NDEATH" in cell.wait_status(2, 3, stale=True)["stale_reason"]


def test_restart_with_a_new_bdseq_and_resent_values_are_stored_once(cell: Cell) -> None:
    """After a restart (NDEATH, new bdSeq, births) the node's data is taken again; values it sends again with
    the same acquisition time are not stored twice."""
    with cell.edge() as edge:
        _born(cell, edge)
        stamps = [now_ms() - 5_000 + i for i in range(3)]
        sent = [metric(74.1 + i / 100, "Double", alias=2, timestamp=t) for i, t in enumerate(stamps)]
        for m in sent:
            edge.ddata("Gauge7", [m])
        cell.probe.wait_for("spc/1/sample", 3, timeout=WAIT)
        first = edge.restart()
        cell.wait_status(1, 3, stale=True)
        cell.wait_status(1, 4, stale=False)
        edge.dbirth("Gauge7", DEVICE_METRICS)
        for m in sent:  # store-and-forward sends them again
            edge.ddata("Gauge7", [m])
        edge.ddata("Gauge7", [metric(74.2, "Double", alias=2, timestamp=stamps[-1] + 1)])
        samples = cell.probe.wait_for("spc/1/sample", 4, timeout=WAIT)
        assert len(samples) == 4 and json.loads(samples[-1].payload)["value"] == 74.2
        assert first["bdSeq"] >= 1
        assert len(cell.readings(1)) == 4


def test_a_skipped_seq_makes_the_bridge_ask_for_a_rebirth(cell: Cell) -> None:
    """A gap in seq that the reorder timeout does not close is answered with NCMD Node Control/Rebirth; the
    node's rebirth makes its data usable again."""
    with cell.edge() as edge:
        _born(cell, edge)
        edge.skip_seq()
        edge.ddata("Gauge7", [metric(74.3, "Double", alias=2)])
        ncmd = edge.wait_event("ncmd", timeout=WAIT)
        assert {"name": REBIRTH_METRIC, "value": True}.items() <= ncmd["metrics"][0].items()
        edge.wait_event("rebirth", timeout=WAIT)
        edge.ddata("Gauge7", [metric(74.4, "Double", alias=2)])
        values = lambda: [json.loads(m.payload)["value"] for m in cell.probe.received("spc/1/sample")]  # noqa: E731
        wait_until(lambda: 74.4 in values(), WAIT, "the sample after the rebirth")
        assert 74.3 in values()  # the message after the gap was taken as it came


def test_data_before_birth_and_an_unknown_alias_are_rejects_with_a_rebirth_request(cell: Cell) -> None:
    """Data from a node the host has not seen born, or by an alias no birth gave, is a recorded reject, and the
    bridge asks the node for a rebirth."""
    with MqttProbe(cell.broker, user="edge", client_id="edge:raw") as raw:
        raw.subscribe("spBv1.0/Plant1/NCMD/Line3")
        from bridge.sparkplug.payload import Metric, encode_payload
        raw.publish("spBv1.0/Plant1/NDATA/Line3", encode_payload(now_ms(), 5, [Metric(None, 9, now_ms(), 10, 1.0)]),
                    qos=0)
        raw.wait_for("spBv1.0/Plant1/NCMD/Line3", 1, timeout=WAIT)
    errors = cell.probe.wait_for("spc/bridge/errors", 1, timeout=WAIT)
    assert "birth" in json.loads(errors[0].payload)["reason"]
    assert query(cell.db, "select count(*) from rejects where topic = 'spBv1.0/Plant1/NDATA/Line3'")[0][0] == 1


def test_the_host_publishes_its_state_again_when_it_is_declared_offline(cell: Cell) -> None:
    """A retained STATE saying the host is offline (an old will, another instance's) is answered at once with the
    host's own online STATE, with the timestamp of its connection."""
    online = [json.loads(m.payload) for m in cell.probe.received(STATE)]
    timestamp = next(s["timestamp"] for s in online if s["online"])
    cell.probe.publish(STATE, json.dumps({"online": False, "timestamp": 1}), retain=True)
    wait_until(lambda: json.loads(cell.probe.received(STATE)[-1].payload)["online"], WAIT, "STATE online again")
    assert json.loads(cell.probe.received(STATE)[-1].payload) == {"online": True, "timestamp": timestamp}


def test_a_lost_broker_connection_makes_the_characteristics_stale(mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    """Mosquitto is killed and restarted: the host's connection drops, its characteristics turn stale (the event
    waits in the outbox until the broker is back), and live again once the edge node, reconnected, is born again.
    A persistent subscriber (its session saved by Mosquitto before the kill) sees the sequence."""
    config = tmp_path / "sparkplug.toml"
    config.write_text(CONFIG)
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = bridge_process(tmp_path, mosquitto.url("bridge"), db, config, "bridge:test")
    watcher = {"user": "admin", "client_id": "admin:status-watcher", "clean_session": False}
    bridge.start()
    try:
        with MqttProbe(mosquitto, **watcher) as probe:  # type: ignore[arg-type]
            probe.subscribe("spc/2/status")
            with EdgeNode(mosquitto.url(None), "edge", password("edge"), "edge:line3", "Plant1", "Line3") as edge:
                edge.nbirth(NODE_METRICS)
                wait_until(lambda: any(not json.loads(m.payload)["stale"] for m in probe.received("spc/2/status")),
                           WAIT, "characteristic 2 live")
                mosquitto.save()  # the watcher's session is on disk, which a SIGKILL would not save
                os.kill(mosquitto.pid, signal.SIGKILL)  # no will goes out: only the connections are lost
                mosquitto.stop()
                mosquitto.start()
                edge.wait_event("birth", timeout=WAIT)  # mqtt.js reconnected and the driver re-published its births
                # Tahu's client does not wait for the host's STATE: its births may come before the host has
                # subscribed again; then its data makes the host ask for a rebirth, and data after it is stored.
                deadline = time.monotonic() + WAIT
                while not query(db, "select count(*) from readings")[0][0] and time.monotonic() < deadline:
                    edge.ndata([metric(1, "Int32", alias=1)])
                    time.sleep(0.5)
        with MqttProbe(mosquitto, **watcher) as probe:  # type: ignore[arg-type]
            wait_until(lambda: len(probe.received("spc/2/status")) >= 3, WAIT, "the queued status events")
            statuses = [json.loads(m.payload) for m in probe.received("spc/2/status")]
        # queued while the watcher was away: lost, born again, and the edge node's clean stop at the end; the status
        # is republished when any of its fields changes (a sample, a violation), so a state may come twice in a row
        states = [(st["stale"], st["stale_reason"].split(" (")[0] if st["stale"] else None) for st in statuses]
        assert [state for k, state in enumerate(states) if k == 0 or state != states[k - 1]] == [
            (True, "the Sparkplug connection was lost"), (False, None), (True, "NDEATH")]
    finally:
        bridge.stop()
