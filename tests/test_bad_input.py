"""Bad input never stops the bridge and never costs a good reading: each kind is stored as a
reject with its reason, published on spc/bridge/errors, and its good neighbours go through."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import EmbeddedBrokerThread, MqttProbe, start_embedded_broker
from tests.credentials import Certificates
from tests.processes import ChildProcess, bridge_process
from tests.stream import query, wait_until

CONFIG = """
[[characteristic]]
id = 1
name = "Individuals"
topic = "t/imr"
chart = "imr"
baseline = 2

[[characteristic]]
id = 2
name = "Subgroups of 5"
topic = "t/xbar"
chart = "xbar_r"
subgroup_size = 5
baseline = 2

[[characteristic]]
id = 3
name = "Fraction rejected"
topic = "t/p"
chart = "p"
subgroup_size = 50
baseline = 2
"""
STALE = """
[[characteristic]]
id = 9
name = "Removed from the configuration later"
topic = "t/removed"
chart = "imr"
"""
GOOD = {"t/imr": b"10.0", "t/xbar": b'{"values": [1, 2, 3, 4, 5]}', "t/p": b'{"count": 3, "n": 50}'}
CASES = [
    ("not JSON", "t/imr", b"ten point five", "not JSON"),
    ("wrong type", "t/imr", b'{"value": "10.5"}', "must be a number"),
    ("boolean", "t/imr", b"true", "must be a number"),
    ("NaN", "t/imr", b"NaN", "not a number"),
    ("Infinity", "t/imr", b'{"value": Infinity}', "not a number"),
    ("empty", "t/imr", b"", "empty payload"),
    ("oversize", "t/imr", b"1" * 70_000, "exceeds the limit of 65536"),
    ("subgroup too long", "t/xbar", b'{"values": [1, 2, 3, 4, 5, 6]}', "exceeds subgroup_size 5"),
    ("negative count", "t/p", b'{"count": -1, "n": 50}', "must be a whole number in 0..2147483647"),
    ("count above n", "t/p", b'{"count": 51, "n": 50}', "exceeds the sample size n=50"),
    ("measurement on a p chart", "t/p", b"0.3", "takes counts"),
    ("unparseable timestamp", "t/imr", b'{"value": 1, "ts": "yesterday"}', "not an ISO 8601"),
    ("far-future timestamp", "t/imr", b'{"value": 1, "ts": "2099-01-01T00:00:00Z"}', "in the future"),
    ("timestamp without zone", "t/imr", b'{"value": 1, "ts": "2026-11-26T10:00:00"}', "no time zone"),
]


class Setup:
    """A running embedded broker and bridge, shared by the tests of this module."""

    def __init__(self, broker: EmbeddedBrokerThread, bridge: ChildProcess, db: str) -> None:
        self.broker, self.bridge, self.db = broker, bridge, db


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, role_users: Path,
          certificates: Certificates) -> Iterator[Setup]:
    """The bridge subscribed once to t/removed, then restarted with a configuration without it."""
    tmp = tmp_path_factory.mktemp("bad-input")
    broker = start_embedded_broker(role_users, certificates)
    db = f"sqlite:///{tmp / 'spc.db'}"
    config = tmp / "chars.toml"
    config.write_text(CONFIG + STALE)
    bridge = bridge_process(tmp, broker.url("bridge"), db, config)
    try:
        bridge.start()
        assert bridge.stop() == 0
        config.write_text(CONFIG)  # the broker keeps the session's subscription to t/removed
        bridge.start()
        yield Setup(broker, bridge, db)
    finally:
        bridge.stop()
        broker.stop()


def _check_neighbours(setup: Setup, topic: str, payload: bytes, reason: str) -> None:
    before = {row[0]: row[1] for row in query(
        setup.db, "select topic, count(*) from readings r join characteristics c "
                  "on c.id = r.characteristic_id group by topic")}
    rejects_before = query(setup.db, "select count(*) from rejects")[0][0]
    with MqttProbe(setup.broker, "tcp") as probe:
        probe.subscribe("spc/bridge/errors")
        probe.subscribe("spc/+/sample")
        good = GOOD.get(topic, GOOD["t/imr"])
        good_topic = topic if topic in GOOD else "t/imr"
        probe.publish(good_topic, good)
        probe.publish(topic, payload)
        probe.publish(good_topic, good)
        errors = probe.wait_for("spc/bridge/errors", 1, timeout=15)
        assert len(errors) == 1
        error = json.loads(errors[0].payload)
        assert error["topic"] == topic and reason in error["reason"]
        assert error["payload"] == payload[:256].decode("utf-8", "replace")
        assert error["received_at"].endswith("Z")
        wait_until(lambda: len(probe.received(f"spc/{_cid(good_topic)}/sample")) >= 2, 15,
                   "the good neighbours' sample events")
    rejects = query(setup.db, "select topic, reason, length(payload) from rejects order by id")
    assert len(rejects) == rejects_before + 1
    assert rejects[-1][0] == topic and reason in rejects[-1][1]
    assert rejects[-1][2] == min(len(payload), 4096)
    after = {row[0]: row[1] for row in query(
        setup.db, "select topic, count(*) from readings r join characteristics c "
                  "on c.id = r.characteristic_id group by topic")}
    assert after[good_topic] == before.get(good_topic, 0) + 2


def _cid(topic: str) -> int:
    return {"t/imr": 1, "t/xbar": 2, "t/p": 3}[topic]


@pytest.mark.parametrize(("kind", "topic", "payload", "reason"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_and_neighbours_go_through(
        setup: Setup, kind: str, topic: str, payload: bytes, reason: str) -> None:
    """One reject with its reason, one error event, and both good neighbours stored and published."""
    _check_neighbours(setup, topic, payload, reason)


def test_topic_of_no_characteristic(setup: Setup) -> None:
    """A message on a topic no characteristic uses any more (a stale subscription) is a reject."""
    _check_neighbours(setup, "t/removed", b"10.0", "no characteristic")


def test_bridge_survived_everything(setup: Setup) -> None:
    """After the whole catalogue the bridge is still the same process, running."""
    assert setup.bridge.proc is not None and setup.bridge.proc.poll() is None
