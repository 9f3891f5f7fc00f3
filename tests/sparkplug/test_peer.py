"""The test peer itself (tests/sparkplug_peer.py), on both test brokers: the Tahu JavaScript edge node publishes
births, data by alias, seq, bdSeq and deaths as Sparkplug B says, and answers a rebirth request, as a plain
subscriber sees them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from paho.mqtt.client import MQTTMessage

from bridge.sparkplug import sparkplug_b_pb2 as pb
from tests.brokers import BrokerHandle, MqttProbe
from tests.credentials import password
from tests.sparkplug_peer import EdgeNode, metric

GROUP, NODE, DEVICE = "Plant1", "Line3", "Gauge7"
NBIRTH, NDATA, NDEATH, NCMD = (f"spBv1.0/{GROUP}/{kind}/{NODE}" for kind in ("NBIRTH", "NDATA", "NDEATH", "NCMD"))
DBIRTH, DDATA, DDEATH = (f"spBv1.0/{GROUP}/{kind}/{NODE}/{DEVICE}" for kind in ("DBIRTH", "DDATA", "DDEATH"))
BORE = metric(74.02, name="Bore/Diameter", alias=1)
COUNT = metric(3, "Int32", name="Count", alias=2)
UINT64 = pb.DataType.Value("UInt64")


@pytest.fixture
def probe(broker: BrokerHandle) -> Iterator[MqttProbe]:
    """A subscriber to everything under spBv1.0/."""
    with MqttProbe(broker, user="admin") as subscriber:
        subscriber.subscribe("spBv1.0/#")
        yield subscriber


@pytest.fixture
def edge(broker: BrokerHandle, probe: MqttProbe) -> Iterator[EdgeNode]:
    """The edge node Plant1/Line3, connected, nothing published yet."""
    url = f"mqtt://{broker.host}:{broker.port}"
    with EdgeNode(url, "admin", password("admin"), "admin:edge", GROUP, NODE) as node:
        yield node


def nth(probe: MqttProbe, topic: str, count: int = 1) -> pb.Payload:
    """The `count`-th message on `topic` (waiting for it), decoded."""
    messages = probe.wait_for(topic, count)
    assert len(messages) >= count, f"{len(messages)} message(s) on {topic}, expected {count}"
    return decode(messages[count - 1])


def decode(message: MQTTMessage) -> pb.Payload:
    """A Sparkplug B payload."""
    return pb.Payload.FromString(message.payload)


def bd_seq(payload: pb.Payload) -> int:
    """The payload's bdSeq metric, a UInt64."""
    (found,) = [m for m in payload.metrics if m.name == "bdSeq"]
    assert found.datatype == UINT64
    return found.long_value


def test_births_and_data_by_alias(edge: EdgeNode, probe: MqttProbe) -> None:
    assert edge.nbirth([BORE, COUNT])["seq"] == 0
    birth = nth(probe, NBIRTH)
    assert (birth.seq, bd_seq(birth)) == (0, 0)
    assert [(m.name, m.alias, m.double_value) for m in birth.metrics[:1]] == [("Bore/Diameter", 1, 74.02)]

    edge.ndata([metric(74.05, alias=1), metric(-5, "Int32", alias=2)])
    data = nth(probe, NDATA)
    assert data.seq == 1
    assert [(m.HasField("name"), m.alias) for m in data.metrics] == [(False, 1), (False, 2)]
    assert data.metrics[0].double_value == 74.05
    assert data.metrics[1].int_value == 2**32 - 5  # two's complement in the unsigned field

    edge.dbirth(DEVICE, [metric(12.5, name="Depth", alias=10)])
    edge.ddata(DEVICE, [metric(12.6, alias=10)])
    edge.ddeath(DEVICE)
    assert [nth(probe, topic).seq for topic in (DBIRTH, DDATA, DDEATH)] == [2, 3, 4]
    assert nth(probe, DDATA).metrics[0].double_value == 12.6


def test_skip_seq_makes_the_seq_jump(edge: EdgeNode, probe: MqttProbe) -> None:
    edge.nbirth([BORE])
    edge.ndata([metric(74.03, alias=1)])
    edge.skip_seq()
    edge.ndata([metric(74.04, alias=1)])
    assert [nth(probe, NDATA, n).seq for n in (1, 2)] == [1, 3]


def test_restart_has_a_new_bd_seq_and_kill_sends_its_will(edge: EdgeNode, probe: MqttProbe) -> None:
    edge.nbirth([BORE])
    assert bd_seq(nth(probe, NBIRTH)) == 0
    assert edge.restart()["bdSeq"] == 1
    assert bd_seq(nth(probe, NDEATH)) == 0
    reborn = nth(probe, NBIRTH, 2)
    assert (reborn.seq, bd_seq(reborn)) == (0, 1)
    assert [m.topic for m in probe.messages if m.topic in (NBIRTH, NDEATH)] == [NBIRTH, NDEATH, NBIRTH]

    edge.kill()
    assert bd_seq(nth(probe, NDEATH, 2)) == 1  # the broker's will, matching the second birth


def test_rebirth_request_republishes_the_births(edge: EdgeNode, probe: MqttProbe) -> None:
    edge.nbirth([BORE, COUNT])
    edge.dbirth(DEVICE, [metric(12.5, name="Depth", alias=10)])
    edge.ndata([metric(74.05, alias=1)])
    nth(probe, NDATA)  # the broker has the node's NCMD subscription, sent before any of its messages
    request = pb.Payload(timestamp=1)
    request.metrics.add(name="Node Control/Rebirth", datatype=pb.DataType.Value("Boolean"), boolean_value=True)
    probe.publish(NCMD, request.SerializeToString(), qos=0)

    assert edge.wait_event("ncmd")["metrics"] == [
        {"name": "Node Control/Rebirth", "type": "Boolean", "value": True}]
    assert edge.wait_event("rebirth")["births"] == 2
    node, device = nth(probe, NBIRTH, 2), nth(probe, DBIRTH, 2)
    assert (node.seq, bd_seq(node), device.seq) == (0, 0, 1)
    assert [m.name for m in node.metrics] == ["Bore/Diameter", "Count", "bdSeq"]
