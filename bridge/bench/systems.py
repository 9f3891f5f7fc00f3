"""The two systems measured side by side: the bridge and the bare relay, each a child process
holding a persistent session on the broker."""

import sqlite3
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.bench.processes import Child, python
from bridge.bench.relay import OUTPUT_ROOT, READY
from bridge.config import parse_broker_url
from bridge.contract import ANY_CHARACTERISTIC, sample_topic

START_TIMEOUT_S = 120.0  # 10,000 characteristics: loading, subscribing, publishing their limits
CONNECTED = "MQTT Connected"
SESSION_TIMEOUT_S = 30.0
# the rows of readings, and the distinct readings among them (by characteristic and key: its seq, else its
# timestamp); the same SQL on SQLite and PostgreSQL
STORED_SQL = "select count(*), count(distinct characteristic_id || '/' || reading_key) from readings"


def bridge_command(url: str, db_url: str, config: Path, client_id: str, *options: str) -> list[str]:
    """The command of ``python -m bridge run`` on ``url`` and ``db_url`` with ``options`` besides."""
    return python("bridge", "run", "--broker", url, "--db", db_url, "--config", str(config),
                  "--client-id", client_id, *options)


def check_stored_once(rows: int, distinct: int, published: int) -> None:
    """Raise unless the database holds the ``published`` good readings, each once (``STORED_SQL``)."""
    if rows != published or distinct != published:
        raise RuntimeError(f"the bridge stored {rows:,} rows ({distinct:,} distinct readings) of "
                           f"the {published:,} good readings published")


def end_session(url: str, client_id: str) -> None:
    """End the persistent session of ``client_id`` (a clean-session connection under it): else the broker
    would queue every later reading for it, and the next system measured would pay for that."""
    broker = parse_broker_url(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                         protocol=paho.MQTTv311)
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    connected = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.set()
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(SESSION_TIMEOUT_S):
            raise TimeoutError(f"could not end the session of {client_id}")
    finally:
        client.disconnect()
        client.loop_stop()


class System:
    """A child process that turns each reading into one event on ``events``."""

    name: str
    events: str  # the topic filter of its events
    process: Child
    ready_line: str
    probe = True  # its ready line does not tell that the broker has granted its subscriptions
    url: str
    client_id: str

    def start(self) -> None:
        """Start it and wait until it has connected (its session exists from then on)."""
        process = self.process
        process.start(lambda: self.ready_line in process.output(), START_TIMEOUT_S)

    def stop(self) -> None:
        """Stop it with SIGTERM (SIGKILL if it hangs); raise if it did not exit cleanly."""
        code = self.process.stop()
        if code not in (0, None):
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.process.output()[-3000:]}")

    def memory(self) -> tuple[int, int]:
        """Resident memory now and at its peak, in bytes."""
        return self.process.memory()

    def discard_session(self) -> None:
        """Once it is stopped for good, end its persistent session (``end_session``)."""
        end_session(self.url, self.client_id)


class BridgeSystem(System):
    """``python -m bridge run`` with a fresh SQLite database (durable commits, as configured). Given the
    first filter of one of its connections (``online``), its first start is ready once the broker has
    granted every subscription of that connection (its "MQTT subscribed to ...: online" line), else once
    connected; a restart resumes the persistent session and its subscriptions, and is ready once connected
    (the broker grants them again only behind the backlog)."""

    name = "bridge"
    events = sample_topic(ANY_CHARACTERISTIC)
    ready_line = CONNECTED

    def __init__(self, workdir: Path, url: str, config: Path, client_id: str, name: str = "bridge",
                 online: str | None = None) -> None:
        self.url, self.client_id, self.name = url, client_id, name
        if online is not None:
            self.ready_line, self.probe = f"MQTT subscribed to {online}", False
        self.db_path = workdir / f"{client_id}.db"
        self.process = Child(bridge_command(url, f"sqlite:///{self.db_path}", config, client_id),
                             workdir / f"{client_id}.log")

    def start(self) -> None:
        super().start()
        self.ready_line = CONNECTED

    def stored(self, first_seq: int | None = None) -> tuple[int, int]:
        """Readings committed with a seq from ``first_seq`` on (None: every reading): rows, and
        distinct readings (by characteristic and key: its seq, else its timestamp)."""
        where = "" if first_seq is None else " where cast(seq as integer) >= ?"
        with sqlite3.connect(self.db_path, timeout=30) as db:
            rows, distinct = db.execute(STORED_SQL + where, () if first_seq is None else (first_seq,)).fetchone()
            return int(rows), int(distinct)

    def rejected_payloads(self) -> list[str]:
        """The stored payload of every reject."""
        with sqlite3.connect(self.db_path, timeout=30) as db:
            return [str(payload) for payload, in db.execute("select payload from rejects")]


class RelaySystem(System):
    """The bare aiomqtt relay (``relay.py``)."""

    name = "relay"
    events = f"{OUTPUT_ROOT}/#"
    ready_line = READY

    def __init__(self, workdir: Path, url: str, config: Path, client_id: str) -> None:
        self.url, self.client_id = url, client_id
        self.process = Child(python("bridge.bench.relay", "--broker", url, "--config", str(config),
                                    "--client-id", client_id), workdir / f"{client_id}.log")
