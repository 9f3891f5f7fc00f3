"""Broker fixtures: Mosquitto from mosquitto.conf and the embedded amqtt broker, each on free loopback ports."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import BrokerHandle, EmbeddedBrokerThread, MosquittoProcess, start_embedded_broker, start_mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """Mosquitto running the repo's mosquitto.conf, persistence in tmp_path; stop() and start() restart it."""
    process = start_mosquitto(tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def embedded_broker() -> Iterator[EmbeddedBrokerThread]:
    """The embedded amqtt broker in a background thread; stop() and start() restart it."""
    broker = start_embedded_broker()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> BrokerHandle:
    """Each broker in turn, as a handle with kind, host, port, ws_port, start() and stop()."""
    handle: BrokerHandle = request.getfixturevalue("embedded_broker" if request.param == "embedded" else "mosquitto")
    return handle
