"""Fixtures: Mosquitto from mosquitto.conf and the embedded amqtt broker on free loopback ports, with one test
user per role and TLS listeners, and fresh databases (a SQLite file, or a new database on PostgreSQL at
127.0.0.1:5432)."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.brokers import BrokerHandle, EmbeddedBrokerThread, MosquittoProcess, start_embedded_broker, start_mosquitto
from tests.credentials import Certificates, create_role_users

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@pytest.fixture(scope="session")
def role_users(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A users directory with one user per role (tests.credentials), written once for the whole run."""
    return create_role_users(tmp_path_factory.mktemp("users"))


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    return Certificates.create(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def mosquitto(tmp_path: Path, role_users: Path, certificates: Certificates) -> Iterator[MosquittoProcess]:
    """Mosquitto running the repo's mosquitto.conf, persistence in tmp_path; stop() and start() restart it."""
    process = start_mosquitto(tmp_path, role_users, certificates)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def embedded_broker(role_users: Path, certificates: Certificates) -> Iterator[EmbeddedBrokerThread]:
    """The embedded amqtt broker in a background thread; stop() and start() restart it."""
    broker = start_embedded_broker(role_users, certificates)
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
    yield from _postgresql_database()


@pytest.fixture
def postgresql_database() -> Iterator[str]:
    """The URL of a new database on the local PostgreSQL server, dropped afterwards."""
    yield from _postgresql_database()


def _postgresql_database() -> Iterator[str]:
    name = f"spc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
