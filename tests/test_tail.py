"""``spc-bridge tail`` prints the events of one characteristic or of a topic filter."""

import signal
from pathlib import Path

import pytest

from tests.brokers import EmbeddedBrokerThread, MqttProbe
from tests.processes import ChildProcess
from tests.stream import wait_until


@pytest.mark.parametrize("scheme", ["mqtt", "mqtts"])
def test_tail_prints_events_of_one_characteristic(embedded_broker: EmbeddedBrokerThread,
                                                  tmp_path: Path, scheme: str) -> None:
    """``tail 7`` shows spc/7/... and nothing of other characteristics, over TCP and over TLS
    verified with ``--ca-file``; Ctrl-C ends it."""
    tail = ChildProcess(["tail", "7", "--broker", embedded_broker.url("dashboard", scheme),
                         "--ca-file", str(embedded_broker.certs.ca)],
                        tmp_path / "tail.log", "(Ctrl-C stops it)")
    tail.start()
    try:
        with MqttProbe(embedded_broker, "tcp") as publisher:
            publisher.publish("spc/8/sample", '{"sample_id": 2}')
            publisher.publish("spc/7/sample", '{"sample_id": 1}')
            publisher.publish("spc/7/violation", '{"violation_id": 3}')
        wait_until(lambda: "spc/7/violation" in tail.output(), 5, "the violation")
        lines = [line for line in tail.output().splitlines() if line.startswith("spc/")]
        assert lines == ['spc/7/sample {"sample_id": 1}', 'spc/7/violation {"violation_id": 3}']
        assert tail.stop(signal.SIGINT) == 0
    finally:
        tail.stop()


def test_tail_reconnects_when_the_broker_restarts(embedded_broker: EmbeddedBrokerThread, tmp_path: Path) -> None:
    """A broker that goes away and comes back: tail says so in one line per attempt and prints what comes after."""
    tail = ChildProcess(["tail", "--broker", embedded_broker.url("dashboard")], tmp_path / "tail.log",
                        "(Ctrl-C stops it)")
    tail.start()
    try:
        embedded_broker.stop()
        wait_until(lambda: "nothing listens on" in tail.output(), 20, "a failed attempt")
        embedded_broker.start()
        wait_until(lambda: "connected again" in tail.output(), 40, "the reconnect")
        with MqttProbe(embedded_broker, "tcp") as publisher:
            publisher.publish("spc/7/sample", '{"sample_id": 9}')
        wait_until(lambda: 'spc/7/sample {"sample_id": 9}' in tail.output(), 10, "the event after the restart")
        assert "lost the connection to" in tail.output() and "next attempt in 1 s" in tail.output()
        assert "Traceback" not in tail.output()
        assert tail.stop(signal.SIGINT) == 0
    finally:
        tail.stop()
