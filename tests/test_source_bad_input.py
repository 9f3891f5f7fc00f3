"""Bad input of the Sparkplug B and vendor JSON sources (issue 12, point 5), through a real broker (the embedded
one and Mosquitto) into a bridge process: each fault is a recorded reject with its reason, published on
spc/bridge/errors, and its good neighbours (the messages before and after it, and the good parts of the same
message) are stored and published. The edge node is written here from raw payloads, so that each message carries
exactly the one fault it is meant to."""

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.sparkplug.payload import (BDSEQ, MAX_BYTES, MAX_METRICS, REBIRTH_METRIC, DataType, Metric, Value,
                                      encode_payload)
from bridge.sparkplug.topics import node_topic
from tests.brokers import BrokerHandle, MqttProbe, start_embedded_broker, start_mosquitto
from tests.credentials import Certificates
from tests.processes import ChildProcess, bridge_process
from tests.sparkplug_peer import now_ms
from tests.stream import query, wait_until

CONFIG = """
[[characteristic]]
id = 1
name = "Bore, line 3 (Sparkplug)"
chart = "imr"
baseline = 2
sparkplug = { group_id = "Plant1", edge_node_id = "Line3", metric = "Bore" }

[[characteristic]]
id = 2
name = "Length, line 3 (Sparkplug)"
chart = "imr"
baseline = 2
sparkplug = { group_id = "Plant1", edge_node_id = "Line3", metric = "Length" }

[[characteristic]]
id = 3
name = "A metric that is text"
chart = "imr"
baseline = 2
sparkplug = { group_id = "Plant1", edge_node_id = "Line3", metric = "Label" }

[[characteristic]]
id = 4
name = "A metric that is a flag"
chart = "imr"
baseline = 2
sparkplug = { group_id = "Plant1", edge_node_id = "Line3", metric = "Running" }

[[characteristic]]
id = 5
name = "Bore, line 3 (Kepware)"
topic = "t/kepware"
value_path = "values[?id=='Line3.Bore'].v | [0]"
timestamp_path = "values[?id=='Line3.Bore'].t | [0]"
timestamp_unit = "ms"
quality_path = "values[?id=='Line3.Bore'].q | [0]"
chart = "imr"
baseline = 2

[[characteristic]]
id = 6
name = "Length, line 3 (Kepware)"
topic = "t/kepware"
value_path = "values[?id=='Line3.Length'].v | [0]"
timestamp_path = "values[?id=='Line3.Length'].t | [0]"
timestamp_unit = "ms"
quality_path = "values[?id=='Line3.Length'].q | [0]"
chart = "imr"
baseline = 2
"""
GROUP, NODE = "Plant1", "Line3"
NBIRTH, NDATA, NCMD = (node_topic(GROUP, kind, NODE) for kind in ("NBIRTH", "NDATA", "NCMD"))
KEPWARE = "t/kepware"
BORE, LENGTH, LABEL, RUNNING = 1, 2, 3, 4  # the metrics' aliases
BIRTH_METRICS: list[tuple[str, int, DataType, Value]] = [("Bore", BORE, DataType.Double, 74.0), ("Length", LENGTH, DataType.Double, 120.0),
                 ("Label", LABEL, DataType.String, "ok"), ("Running", RUNNING, DataType.Boolean, True)]
WAIT = 20.0
REORDER_S = 0.2  # the bridge's reorder timeout, which is also how seldom it asks a node for a rebirth

Sent = tuple[str, bytes]  # a message: topic and payload
Expected = tuple[str, str]  # a reject: its topic and a part of its reason


class Edge:
    """Raw Sparkplug payloads of edge node Plant1/Line3: each NBIRTH with seq 0 and a new bdSeq, each message after
    it with the next seq, each value with an acquisition time of its own (a value's key is its time)."""

    def __init__(self) -> None:
        self.seq = 0
        self.bdseq = 0
        self.clock = now_ms() - 600_000

    def stamp(self) -> int:
        """A new acquisition time, in the past."""
        self.clock += 1
        return self.clock

    def nbirth(self, metrics: list[Metric] | None = None) -> Sent:
        """An NBIRTH (seq 0, bdSeq, Node Control/Rebirth) of ``metrics``, by default the four of BIRTH_METRICS."""
        now = self.stamp()
        self.bdseq += 1
        self.seq = 1
        declared = metrics if metrics is not None else [
            Metric(name, alias, now, datatype, value) for name, alias, datatype, value in BIRTH_METRICS]
        control = [Metric(BDSEQ, None, now, DataType.Int64, self.bdseq),
                   Metric(REBIRTH_METRIC, None, now, DataType.Boolean, False)]
        return NBIRTH, encode_payload(now, 0, control + declared)

    def ndata(self, metrics: list[Metric]) -> Sent:
        """An NDATA of ``metrics`` with the next seq."""
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return NDATA, encode_payload(now_ms(), seq, metrics)

    def value(self, alias: int, number: Any) -> Metric:
        """A DATA metric by alias alone, as the specification wants it, stamped with a new time."""
        return Metric(None, alias, self.stamp(), None, number)

    def good(self) -> Sent:
        """An NDATA of both numeric metrics."""
        return self.ndata([self.value(BORE, 74.01), self.value(LENGTH, 120.02)])


@dataclass
class Setup:
    """A broker, the bridge as Sparkplug host, the edge user's raw connection and the edge node's state."""

    broker: BrokerHandle
    bridge: ChildProcess
    db: str
    raw: MqttProbe
    edge: Edge


@pytest.fixture(scope="module", params=["embedded", "mosquitto"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, role_users: Path,
          certificates: Certificates) -> Iterator[Setup]:
    """The bridge on each broker in turn, online on both of its connections, and the edge user connected."""
    tmp = tmp_path_factory.mktemp(f"source-bad-input-{request.param}")
    broker: BrokerHandle = (start_embedded_broker(role_users, certificates) if request.param == "embedded"
                            else start_mosquitto(tmp, role_users, certificates))
    db = f"sqlite:///{tmp / 'spc.db'}"
    config = tmp / "chars.toml"
    config.write_text(CONFIG)
    bridge = bridge_process(tmp, broker.url("bridge"), db, config, "bridge:test",
                            "--sparkplug-reorder-timeout", str(REORDER_S))
    try:
        bridge.start()
        wait_until(lambda: bridge.output().count(": online") >= 2, WAIT, "both connections of the bridge online")
        with MqttProbe(broker, user="edge", client_id="edge:bad-input") as raw:
            raw.subscribe(NCMD)
            yield Setup(broker, bridge, db, raw, Edge())
    finally:
        bridge.stop()
        broker.stop()


def _readings(setup: Setup) -> dict[int, int]:
    return dict(query(setup.db, "select characteristic_id, count(*) from readings group by characteristic_id"))


def _payload_of(column: str) -> bytes:
    """The bytes a rejects.payload value stands for: ``base64:`` and the bytes, else UTF-8 text."""
    if column.startswith("base64:"):
        return base64.b64decode(column.removeprefix("base64:"))
    return column.encode("utf-8")


def _check(setup: Setup, sent: list[Sent], rejects: list[Expected], stored: dict[int, int]) -> list[tuple]:
    """Publish ``sent`` in order as the edge user; then the rejects are exactly ``rejects`` (stored and published,
    each with its topic and reason, and the start of its payload), and ``stored`` readings more of each
    characteristic are stored and published as samples. Return the new rejects rows (topic, reason, payload)."""
    before, last_reject = _readings(setup), query(setup.db, "select coalesce(max(id), 0) from rejects")[0][0]
    with MqttProbe(setup.broker, user="admin") as probe:
        probe.subscribe("spc/bridge/errors")
        probe.subscribe("spc/+/sample")
        for topic, payload in sent:
            (setup.raw if topic.startswith("spBv1.0/") else probe).publish(topic, payload)
        for cid, count in stored.items():
            probe.wait_for(f"spc/{cid}/sample", count, timeout=WAIT)
        errors = [json.loads(m.payload) for m in probe.wait_for("spc/bridge/errors", len(rejects), timeout=WAIT)]
        assert {cid: len(probe.received(f"spc/{cid}/sample")) for cid in stored} == stored
    assert sorted((e["topic"], _which(rejects, e["topic"], e["reason"])) for e in errors) == sorted(rejects), errors
    for error in errors:
        assert _sent_on(sent, error["topic"], error["payload"])
    rows = query(setup.db, f"select topic, reason, payload from rejects where id > {last_reject} order by id")
    assert sorted((topic, _which(rejects, topic, reason)) for topic, reason, _ in rows) == sorted(rejects), rows
    for topic, _, payload in rows:
        assert _sent_on(sent, topic, payload)
    after = _readings(setup)
    assert {cid: after.get(cid, 0) - before.get(cid, 0) for cid in after} == {
        cid: stored.get(cid, 0) for cid in after}
    return rows


def _sent_on(sent: list[Sent], topic: str, column: str) -> bool:
    """Whether a payload sent on ``topic`` starts with what the reject (or its event) kept of it."""
    return any(payload.startswith(_payload_of(column)) for where, payload in sent if where == topic)


def _which(expected: list[Expected], topic: str, reason: str) -> str:
    """The expected reason fragment that ``reason`` on ``topic`` contains ('' if none)."""
    return next((part for where, part in expected if where == topic and part in reason), "")


def test_a_payload_that_is_not_protobuf(setup: Setup) -> None:
    """Bytes that are no protobuf on an NDATA topic: a reject saying so, its payload kept as base64; the data before
    it and after it (with the next seq) is stored."""
    edge = setup.edge
    junk = b"not protobuf \x00\xff"
    [(_, _, payload)] = _check(setup, [edge.nbirth(), edge.good(), (NDATA, junk), edge.good()],
                               [(NDATA, "not a Sparkplug B payload (protobuf)")], {1: 2, 2: 2})
    assert payload == "base64:" + base64.b64encode(junk).decode()


def test_metrics_that_are_not_numbers_beside_one_that_is(setup: Setup) -> None:
    """A String and a Boolean metric of characteristics, in the same NDATA as two numeric ones: a reject each,
    naming the characteristic, the metric and its type; the numeric ones are stored."""
    edge = setup.edge
    sent = [edge.nbirth(), edge.good(),
            edge.ndata([edge.value(BORE, 74.02), edge.value(LABEL, "74.02"), edge.value(RUNNING, True),
                        edge.value(LENGTH, 120.03)]),
            edge.good()]
    _check(setup, sent, [(NDATA, "characteristic 3: metric Label is String '74.02', not a number"),
                         (NDATA, "characteristic 4: metric Running is Boolean True, not a number")], {1: 3, 2: 3})


def test_an_alias_never_born(setup: Setup) -> None:
    """An NDATA with an alias no birth gave, between the node's two numeric metrics: a reject of that metric alone,
    the other two stored, and the node asked for a rebirth."""
    edge = setup.edge
    asked = _asked_for_rebirths(setup)
    sent = [edge.nbirth(), edge.good(),
            edge.ndata([edge.value(BORE, 74.03), edge.value(99, 1.5), edge.value(LENGTH, 120.04)]),
            edge.good()]
    _check(setup, sent, [(NDATA, "NDATA from Plant1/Line3: alias 99 was never born")], {1: 3, 2: 3})
    assert len(setup.raw.wait_for(NCMD, asked + 1, timeout=WAIT)) > asked, "no rebirth request"


def test_a_birth_with_duplicate_aliases(setup: Setup) -> None:
    """An NBIRTH giving one alias to two metrics is a reject; the node is then unborn (its data a reject too, its
    characteristics stale) until a good NBIRTH, after which its data counts again; the bridge asks for a rebirth."""
    edge = setup.edge
    asked = _asked_for_rebirths(setup)
    sent = [edge.nbirth(), edge.good(),
            edge.nbirth([Metric("Bore", BORE, edge.stamp(), DataType.Double, 74.0),
                         Metric("Length", BORE, edge.stamp(), DataType.Double, 120.0)]),
            edge.good(), edge.nbirth(), edge.good()]
    with MqttProbe(setup.broker, user="admin") as status:
        status.subscribe("spc/1/status")
        _check(setup, sent, [(NBIRTH, "NBIRTH of Plant1/Line3 gives alias 1 to both 'Bore' and 'Length'"),
                             (NDATA, "NDATA from Plant1/Line3 before its birth")], {1: 2, 2: 2})
        wait_until(lambda: _live_after_stale(status, "alias 1"), WAIT, "characteristic 1 stale, then live")
    assert len(setup.raw.wait_for(NCMD, asked + 1, timeout=WAIT)) > asked, "no rebirth request"


def _asked_for_rebirths(setup: Setup) -> int:
    """How many rebirth requests the node has had, once the bridge may ask again (it asks at most once a reorder
    timeout, and the test before may just have made it ask)."""
    time.sleep(REORDER_S)
    return len(setup.raw.received(NCMD))


def _live_after_stale(probe: MqttProbe, reason: str) -> bool:
    """Whether ``probe`` saw characteristic 1's status go stale for ``reason``, then live."""
    statuses = [json.loads(m.payload) for m in probe.received("spc/1/status")]
    stale = next((i for i, s in enumerate(statuses) if s["stale"] and reason in s["stale_reason"]), None)
    return stale is not None and any(not s["stale"] for s in statuses[stale + 1:])


def _oversized(size: str) -> tuple[list[Metric], str]:
    """The metrics of a birth over the host's limit of ``size`` ("metrics": MAX_METRICS, about 50 kB; "bytes":
    MAX_BYTES), and what its reject says."""
    if size == "metrics":
        return ([Metric(f"m{i}", 10 + i, None, DataType.Double, 0.0) for i in range(MAX_METRICS + 1)],
                f"exceeds the limit of {MAX_METRICS} metrics")
    return [Metric("Blob", 10, None, DataType.Bytes, b"\x00" * MAX_BYTES)], f"exceeds the limit of {MAX_BYTES} bytes"


@pytest.mark.parametrize("size", ["metrics", "bytes"])
def test_an_oversized_birth(setup: Setup, size: str) -> None:
    """An NBIRTH over the host's limits, by its number of metrics or by its size: a reject that says which limit;
    the node's data before it and after its next good birth is stored."""
    edge = setup.edge
    metrics, reason = _oversized(size)
    _check(setup, [edge.nbirth(), edge.good(), edge.nbirth(metrics), edge.nbirth(), edge.good()],
           [(NBIRTH, reason)], {1: 2, 2: 2})


@pytest.mark.parametrize("size", ["metrics", "bytes"])
def test_an_oversized_birth_ends_the_previous_birth(setup: Setup, size: str) -> None:
    """After an oversized NBIRTH the node is unborn, as after any rejected birth: a value by the old birth's alias
    is a reject, not a reading (checked once the Length of the next good birth's data is stored)."""
    edge = setup.edge
    before = _readings(setup)
    metrics, _ = _oversized(size)
    with MqttProbe(setup.broker, user="admin") as probe:
        probe.subscribe("spc/2/sample")
        for topic, payload in [edge.nbirth(), edge.good(), edge.nbirth(metrics), edge.ndata([edge.value(BORE, 74.05)]),
                               edge.nbirth(), edge.ndata([edge.value(LENGTH, 120.06)])]:
            setup.raw.publish(topic, payload)
        probe.wait_for("spc/2/sample", 2, timeout=WAIT)
    assert _readings(setup)[1] - before.get(1, 0) == 1, "the value sent after the oversized birth was stored"


def _kepware(tags: list[dict[str, Any]]) -> Sent:
    """A Kepware IoT Gateway message of ``tags``."""
    return KEPWARE, json.dumps({"timestamp": now_ms(), "values": tags}).encode()


def _tag(edge: Edge, name: str, **fields: Any) -> dict[str, Any]:
    """A Kepware tag with a time of its own; ``fields`` as given (v, q), missing ones left out."""
    return {"id": f"Line3.{name}", **fields, "t": edge.stamp()}


def _good_kepware(edge: Edge) -> Sent:
    return _kepware([_tag(edge, "Bore", v=74.01, q=True), _tag(edge, "Length", v=120.01, q=True)])


BORE_PATH = "values[?id=='Line3.Bore']"


@pytest.mark.parametrize(("bore", "reason"), [
    ({"q": True}, f"characteristic 5: value_path {BORE_PATH}.v | [0] selects nothing in this message"),
    ({"v": "74.01", "q": True}, f'characteristic 5: value_path {BORE_PATH}.v | [0] selects "74.01", not a number'),
    ({"v": 74.01, "q": False}, f"characteristic 5: bad quality: quality_path {BORE_PATH}.q | [0] is false"),
], ids=["selects nothing", "not a number", "bad quality"])
def test_a_kepware_tag_the_bridge_cannot_use(setup: Setup, bore: dict[str, Any], reason: str) -> None:
    """A Kepware message whose Bore tag has no value, a value that is no number, or bad quality: a reject for that
    characteristic, naming its path; the Length tag of the same message and the messages around it are stored."""
    edge = setup.edge
    bad = _kepware([_tag(edge, "Bore", **bore), _tag(edge, "Length", v=120.05, q=True)])
    _check(setup, [_good_kepware(edge), bad, _good_kepware(edge)], [(KEPWARE, reason)], {5: 2, 6: 3})


def test_the_bridge_survived_everything(setup: Setup) -> None:
    """After the whole catalogue the bridge is the same process, still running."""
    assert setup.bridge.proc is not None and setup.bridge.proc.poll() is None
