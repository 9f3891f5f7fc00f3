"""Nothing lost, nothing doubled on a three-node NATS JetStream cluster (the MQTT streams replicated
on every node) while a QoS 1 stream from several gauges runs: kill -9 of a broker node and of the
bridge, each restarted; and the death of the node that carries the bridge and leads the stream of
MQTT messages, with the active bridge: its standby on a survivor carries on."""

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.nats import NatsCluster
from tests.processes import BRIDGE_CLIENT_ID, ChildProcess
from tests.stream import (
    TOPICS, Gauges, Recorder, assert_nothing_lost_or_doubled, missing_keyless, query, streaming, wait_until,
)
from tests.test_failover import instance

# Elections and JetStream's timeouts are timed: the module runs alone, in the serial phase.
pytestmark = pytest.mark.serial

READINGS = 3000
RATE = 400.0  # readings per second: the stream lasts about 8 s
ACK_WAIT_S = 5  # a delivery not acknowledged comes back after this (NATS's default: 30 s)
MAX_ACK_PENDING = 10_000
ONLINE_TIMEOUT = 30.0
DRAIN_TIMEOUT = 60.0
KEYED = (1, 2, 3)  # the stream's characteristics whose readings carry a seq, an id or a ts
RENUMBERED = ("--redelivered-ids", "renumbered")  # after a stream leader's loss redeliveries get new ids


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three NATS nodes, each ready for MQTT sessions; every node stopped afterwards."""
    nats = NatsCluster(tmp_path / "nats", mqtt={"ack_wait": f"{ACK_WAIT_S}s", "max_ack_pending": MAX_ACK_PENDING})
    try:
        nats.start()
        yield nats
    finally:
        nats.stop()


def start_online(bridge: ChildProcess) -> None:
    """Start the bridge and wait (bounded) until it holds every subscription."""
    bridge.start()
    wait_until(lambda: ": online" in bridge.output(), ONLINE_TIMEOUT, "the bridge online")


def wait_published(gauges: Gauges, share: float) -> None:
    """Wait (bounded) until the gauges have published ``share`` of the stream."""
    wait_until(lambda: gauges.published >= share * gauges.total, 30, f"{share:.0%} of the stream published")


def test_kill_a_node_and_the_bridge_mid_stream(cluster: NatsCluster, tmp_path: Path) -> None:
    """The bridge on one node, the gauges and the recorder on another: kill -9 the third mid-stream,
    then kill -9 the bridge while it is down; restart both. The two nodes left carry on, the third
    rejoins, every reading is stored once and every event received."""
    # A node that leads a JetStream group takes with it what it had not replicated, and the group
    # stalls until the others elect a leader (4 to 9 s); bare numbers may then double (the next test),
    # and without a metadata leader the restarted bridge could not resume its session for seconds.
    meta = cluster.meta_leader()
    victim = next(node for node in reversed(cluster.nodes) if node is not meta)
    bridge_node, gauge_node = (node for node in cluster.nodes if node is not victim)
    with streaming(bridge_node, tmp_path, READINGS, RATE, gauge_node) as (bridge, gauges, recorder, db):
        cluster.move_leaders_off(victim)  # now that the bridge's and the recorder's consumers exist
        gauges.start()
        wait_published(gauges, 0.2)
        victim.kill()
        wait_published(gauges, 0.4)
        bridge.kill()
        start_online(bridge)
        cluster.restart(victim)
        gauges.wait(60)
        cluster.wait_delivered(DRAIN_TIMEOUT)
        # What the killed bridge had not acknowledged comes back after ack_wait, behind newer
        # readings: they are stored in another order than sent, so readings are compared as sets.
        assert_nothing_lost_or_doubled(gauges, recorder, db, timeout=DRAIN_TIMEOUT, gauge_order=False)


def stored_values(db: str, cid: int) -> Counter[float]:
    """The measurements stored for characteristic ``cid``, with their multiplicity."""
    return Counter(json.loads(m)[0] for m, in query(
        db, f"select measurements from readings where characteristic_id = {cid}"))


def sent_values(gauges: Gauges, cid: int) -> Counter[float]:
    """The measurements the gauges sent for keyed characteristic ``cid``, with their multiplicity."""
    return Counter(json.loads(p)["value"] for p in gauges.sent[cid])


def every_event_received(recorder: Recorder, db: str) -> bool:
    """Whether the recorder has received an event for every sample and violation stored."""
    return all({i for i, in query(db, f"select id from {table} where characteristic_id = {cid}")}
               <= set(recorder.ids(kind, cid))
               for cid in TOPICS for kind, table in (("sample", "samples"), ("violation", "violations")))


def test_the_standby_carries_on_on_a_survivor_when_the_active_node_dies(cluster: NatsCluster,
                                                                          tmp_path: Path) -> None:
    """kill -9, mid-stream, the node that carries the active bridge and leads the stream of MQTT
    messages, and the active bridge with it; its standby, waiting on another node, takes over and
    resumes the session there, and the dead node rejoins. NATS delivers again, with new packet ids, what
    the dead node had not replicated (acknowledgements) or had stored without sending the PUBACK (a
    gauge sends it again): with ``--redelivered-ids renumbered`` readings with a seq, an id or a ts are
    stored exactly once, none without one is lost (some may be stored twice), and every event arrives."""
    bridge_node = cluster.stream_leader()
    gauge_node, survivor = (node for node in cluster.nodes if node is not bridge_node)
    with streaming(bridge_node, tmp_path, READINGS, RATE, gauge_node, RENUMBERED) as (bridge, gauges, recorder, db), \
            ExitStack() as stack:
        standby = instance(tmp_path, survivor, db, "standby", *RENUMBERED)
        standby.ready_line = f"standby for {BRIDGE_CLIENT_ID}"
        stack.callback(standby.stop)
        standby.start()
        gauges.start()
        wait_published(gauges, 0.3)
        bridge_node.kill()
        bridge.kill()
        # at once (its holder is gone), and connected once the survivors have elected leaders (4 to 12 s;
        # each attempt before that is refused after 4 s, and the bridge backs off up to 8 s between them)
        wait_until(lambda: ": online" in standby.output(), ONLINE_TIMEOUT * 2, "the standby online on the survivor")
        assert "session resumed" in standby.output()
        cluster.restart(bridge_node)
        gauges.wait(60)
        cluster.wait_delivered(DRAIN_TIMEOUT)
        for cid in KEYED:
            stored, expected = stored_values(db, cid), sent_values(gauges, cid)
            assert stored == expected, f"characteristic {cid}: {stored.total()} stored of {expected.total()}"
        wait_until(lambda: not missing_keyless(gauges, db), DRAIN_TIMEOUT, "every reading without a key stored")
        wait_until(lambda: every_event_received(recorder, db), DRAIN_TIMEOUT, "every event at the recorder")
