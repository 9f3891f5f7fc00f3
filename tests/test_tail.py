"""``spc-bridge tail`` prints the events of one characteristic or of a topic filter."""

import signal
import time
from pathlib import Path

import pytest

from tests.brokers import EmbeddedBrokerThread, MqttProbe
from tests.processes import ChildProcess


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
        for _ in range(100):
            if "spc/7/violation" in tail.output():
                break
            time.sleep(0.05)
        lines = [line for line in tail.output().splitlines() if line.startswith("spc/")]
        assert lines == ['spc/7/sample {"sample_id": 1}', 'spc/7/violation {"violation_id": 3}']
        assert tail.stop(signal.SIGINT) == 0
    finally:
        tail.stop()
