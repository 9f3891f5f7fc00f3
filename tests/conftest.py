"""Fixtures: Mosquitto from mosquitto.conf and the embedded amqtt broker on free loopback ports, and
fresh databases (a SQLite file, or a new database on PostgreSQL at 127.0.0.1:5432)."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.brokers import BrokerHandle, EmbeddedBrokerThread, MosquittoProcess, start_embedded_broker, start_mosquitto

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


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


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a new database on the local PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'spc.db'}"
        return
    name = f"spc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
