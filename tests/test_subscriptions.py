"""Ingest subscriptions: a few wildcard roots instead of a filter per characteristic, every SUBACK
checked, ``online`` only once all are granted, a refused one reported and retried, and a message on a
root that matches no characteristic rejected. End to end with the bridge process on the embedded
broker, Mosquitto and a private NATS server (which refuses a subscription its ACL denies)."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import pytest

from bridge.config import parse_broker_url
from bridge.contract import REQUEST_FILTER
from bridge.service.mqtt import Connected, MqttLink, SubscriptionRefused
from bridge.service.subscriptions import derive_roots, filter_problem, roots_problems
from tests.brokers import BrokerHandle, MqttProbe
from tests.nats import NatsProcess
from tests.processes import bridge_process
from tests.stream import query, wait_until

COUNT = 100  # characteristics: past NATS's 63 subscriptions per session, were each its own
ROOTS = ["line/#", "t/#"]
ONLINE_LINE = "MQTT subscribed to line/#, t/#, spc/bridge/request/+/+: online"


def topic(cid: int) -> str:
    """Characteristic ``cid``'s topic: ``t/imr``, then ``t/g/<id>`` and ``line/g/<id>``."""
    return "t/imr" if cid == 1 else f"t/g/{cid}" if cid <= COUNT // 2 else f"line/g/{cid}"


def write_config(tmp_path: Path) -> Path:
    """COUNT individuals charts, fixed limits (every reading makes a judged sample)."""
    path = tmp_path / "chars.toml"
    path.write_text("".join(
        f'[[characteristic]]\nid = {cid}\nname = "c{cid}"\ntopic = "{topic(cid)}"\nchart = "imr"\n'
        "center = 10.0\nsigma = 1.0\n\n" for cid in range(1, COUNT + 1)))
    return path


@pytest.fixture(params=["embedded", "mosquitto", "nats"])
def any_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerHandle]:
    """The embedded broker, Mosquitto and a private NATS server in turn."""
    if request.param != "nats":
        yield request.getfixturevalue({"embedded": "embedded_broker", "mosquitto": "mosquitto"}[request.param])
        return
    nats = NatsProcess(tmp_path)
    nats.start()
    try:
        yield nats  # type: ignore[misc]
    finally:
        nats.stop()


def states(probe: MqttProbe) -> list[bytes]:
    """The ``spc/bridge/state`` payloads the probe has received."""
    return [m.payload for m in probe.received("spc/bridge/state")]


def errors(probe: MqttProbe) -> list[dict]:
    """The error events the probe has received."""
    return [json.loads(m.payload) for m in probe.received("spc/bridge/errors")]


# --- the roots ---------------------------------------------------------------------------------

def test_derived_roots_are_one_per_first_level() -> None:
    topics = [topic(cid) for cid in range(1, COUNT + 1)] + ["gauge7"]
    assert derive_roots(topics) == ["gauge7/#", "line/#", "t/#"]
    assert roots_problems(derive_roots(topics), topics) == []


@pytest.mark.parametrize(("root", "problem"), [
    ("", "an empty filter"),
    ("plant1/#/x", "'#' the whole last level"),
    ("plant1/a+", "'+' must be a whole level"),
    ("plant1#", "'#' the whole last level"),
    ("#", "bridge's own spc/"),
    ("+/gauges/#", "bridge's own spc/"),
    ("spc/#", "bridge's own spc/"),
    ("$share/g/plant1/#", "starts with '$'"),
])
def test_a_root_is_a_valid_filter_away_from_the_bridges_topics(root: str, problem: str) -> None:
    assert problem in (filter_problem(root) or "")


def test_each_topic_under_exactly_one_used_root() -> None:
    topics = ["plant1/a/x", "plant1/b/y", "plant2/z"]
    assert roots_problems(["plant1/#", "plant2/#"], topics) == []
    assert roots_problems(["plant1/+/x", "plant1/b/#", "plant2/z"], topics) == []
    (uncovered,) = roots_problems(["plant1/#"], topics)
    assert uncovered.startswith("1 characteristic topic(s) under no root, e.g. 'plant2/z'")
    (doubled,) = roots_problems(["plant1/#", "plant1/a/#", "plant2/#"], topics)
    assert "'plant1/a/x' ('plant1/#' and 'plant1/a/#')" in doubled and "arrive twice" in doubled
    (unused,) = roots_problems(["plant1/#", "plant2/#", "plant3/#"], topics)
    assert unused.startswith("'plant3/#' cover(s) no characteristic's topic")
    assert roots_problems(["plant1/#", "plant1/#", "plant2/#"], topics)[0] == "'plant1/#' given more than once"


# --- end to end ----------------------------------------------------------------------------------

def test_every_characteristic_is_received_on_a_few_roots(any_broker: BrokerHandle, database: str,
                                                         tmp_path: Path) -> None:
    """100 characteristics on two roots: ``online`` comes after the SUBACKs, and readings published the
    moment it arrives are all stored; a reading on ``t/imr/`` or on an unconfigured topic under a root
    is a reject, in the table and on spc/bridge/errors; the bridge's own events never come back."""
    bridge = bridge_process(tmp_path, any_broker.url("bridge"), database, write_config(tmp_path))
    with MqttProbe(any_broker) as probe, MqttProbe(any_broker, user="gauge") as gauge:
        probe.subscribe("spc/bridge/state")
        probe.subscribe("spc/bridge/errors")
        bridge.start()
        try:
            wait_until(lambda: b"online" in states(probe), 20, "online")
            for cid in range(1, COUNT + 1):  # at once: a subscription made after online would miss them
                gauge.publish(topic(cid), json.dumps({"value": 10.0, "seq": cid}))
            wait_until(lambda: query(database, "select count(*) from readings")[0][0] >= COUNT, 30,
                       "every reading stored")
            stored = query(database, "select characteristic_id, seq from readings order by characteristic_id")
            assert stored == [(cid, str(cid)) for cid in range(1, COUNT + 1)]
            assert ONLINE_LINE in bridge.output() and states(probe) == [b"online"]
            for bad in ("t/imr/", "t/unknown/9"):
                gauge.publish(bad, "10.0")
            wait_until(lambda: len(errors(probe)) >= 2, 15, "two error events")
            expected = {("t/imr/", "no characteristic for topic t/imr/"),
                        ("t/unknown/9", "no characteristic for topic t/unknown/9")}
            assert {(e["topic"], e["reason"]) for e in errors(probe)} == expected
            assert assert_rejects(database) == expected
            assert bridge.stop() == 0
        finally:
            bridge.stop()


def assert_rejects(database: str) -> set[tuple[str, str]]:
    """The rejects table as (topic, reason), after checking that none is on the bridge's own topics."""
    rows = query(database, "select topic, reason from rejects")
    assert not [t for t, _ in rows if t.startswith("spc/")], rows
    return set(rows)


def test_a_refused_subscription_is_reported_retried_and_keeps_the_bridge_offline(
        tmp_path: Path) -> None:
    """NATS refuses ``t/#`` to the bridge's user (SUBACK 0x80): an ERROR in the log, an event on
    spc/bridge/errors and a reject row, state ``offline``, retries with a growing wait; ``line/#``
    works meanwhile. Once the ACL allows it (NATS restarted), the bridge goes online."""
    nats = NatsProcess(tmp_path, deny=["t/#"])
    nats.start()
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = bridge_process(tmp_path, nats.url("bridge"), db, write_config(tmp_path))
    try:
        with MqttProbe(nats) as probe, MqttProbe(nats, user="gauge") as gauge:
            probe.subscribe("spc/bridge/state")
            probe.subscribe("spc/bridge/errors")
            bridge.start()
            wait_until(lambda: bridge.output().count("subscribing again to t/#") >= 2, 20, "two retries")
            log = bridge.output()
            assert "ERROR bridge.service.mqtt: the broker refused the bridge's subscription to t/# (SUBACK 0x80" in log
            assert "next try in 1 s" in log and "next try in 2 s" in log and ONLINE_LINE not in log
            assert states(probe) == [b"offline"]
            refused = [e for e in errors(probe) if e["topic"] == "t/#"]
            assert len(refused) >= 2 and "no reading on it is received" in refused[0]["reason"]
            rows = query(db, "select topic, reason from rejects")
            assert rows and {t for t, _ in rows} == {"t/#"}
            gauge.publish(topic(COUNT), json.dumps({"value": 10.0, "seq": 1}))  # line/#: granted
            wait_until(lambda: query(db, "select count(*) from readings")[0][0] == 1, 15, "line/ reading")
        # nats-server 2.9.10 panics reloading an MQTT configuration's authorization: restart it instead
        nats.stop()
        nats.write_config(deny=[])
        nats.start()
        with MqttProbe(nats) as probe, MqttProbe(nats, user="gauge") as gauge:
            probe.subscribe("spc/bridge/state")
            wait_until(lambda: states(probe)[-1:] == [b"online"], 30, "online once t/# is granted")
            assert ONLINE_LINE in bridge.output()
            gauge.publish(topic(2), json.dumps({"value": 10.0, "seq": 1}))
            wait_until(lambda: query(db, "select count(*) from readings")[0][0] == 2, 15, "t/ reading")
            assert bridge.stop() == 0
    finally:
        bridge.stop()
        nats.stop()


def test_the_link_counts_refusals_and_asks_again(tmp_path: Path) -> None:
    """The link alone: each refusal counted and put in its inbox, the filter asked for again with a
    growing wait, and not online while one is refused."""
    nats = NatsProcess(tmp_path, deny=["t/#"])
    nats.start()
    inbox: SimpleQueue[Any] = SimpleQueue()
    link = MqttLink(parse_broker_url(nats.url("bridge")), "bridge:link-test", inbox, lambda _: None)
    try:
        link.start(ROOTS + [REQUEST_FILTER])
        deadline = time.monotonic() + 15
        while link.refusals < 2 and time.monotonic() < deadline:
            link.poll(0.05)
        items = [inbox.get_nowait() for _ in range(inbox.qsize())]
        assert link.refusals >= 2 and not link.online and isinstance(items[0], Connected)
        refusals = [i for i in items if isinstance(i, SubscriptionRefused)]
        assert len(refusals) == link.refusals and {r.topic_filter for r in refusals} == {"t/#"}
        assert "next try in 1 s" in refusals[0].reason and "next try in 2 s" in refusals[1].reason
    finally:
        link.client.disconnect()
        nats.stop()
