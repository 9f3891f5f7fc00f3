"""``python -m bridge.bench.scaling``: how fast 1, 2, 3 ... bridge processes sharing the partitions of one bridge
on PostgreSQL drain a queued backlog, beside one process on SQLite, and how many rows the database takes per reading.

Each measurement has its own Mosquitto (``brokers.start_mosquitto``) and a fresh database. P processes start with
``--partitions P --take 1`` (one process: a plain ``spc-bridge run``), create their sessions and stop; the bench's
gauges queue the backlog on those sessions at QoS 1; the processes start again and the drain is timed from their
start until the database holds every reading, each once.
"""

import argparse
import json
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import sqlalchemy as sa

from bridge.bench.brokers import client_id, start_mosquitto
from bridge.bench.load import Load, run_load
from bridge.bench.options import Options
from bridge.bench.phases import DRAIN_RATE_FLOOR
from bridge.bench.processes import Child
from bridge.bench.progress import Progress
from bridge.bench.report import machine
from bridge.bench.systems import CONNECTED, START_TIMEOUT_S, STORED_SQL, System, bridge_command, check_stored_once
from bridge.bench.workload import Workload

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
POSTGRES_CONNECT_TIMEOUT_S = 10
ONLINE = re.compile(r"MQTT subscribed to .*: online$", re.MULTILINE)
POLL_S = 0.1  # the resolution of a drain's end
STATS_TIMEOUT_S = 10.0
# PostgreSQL's row counters, for every table of the database: those of the readings inserted tell when the
# backends of stopped bridges have reported all of theirs (a backend reports what is left as it ends)
WRITES_SQL = ("select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0), "
              "coalesce(sum(n_tup_ins) filter (where relname = 'readings'), 0) from pg_stat_user_tables")


class _Bridge(System):
    """One ``spc-bridge run`` process, ``instance`` of the bridge ``client_id``; with ``partitions`` above 1 it
    serves one of them (``--take 1``)."""

    def __init__(self, workdir: Path, url: str, db_url: str, config: Path, client_id: str, instance: str,
                 partitions: int) -> None:
        self.url, self.client_id, self.name = url, client_id, f"bridge {instance}"
        split = ("--instance", instance, "--partitions", str(partitions), "--take", "1") if partitions > 1 else ()
        self.process = Child(bridge_command(url, db_url, config, client_id, *split), workdir / f"{instance}.log")


class _Database:
    """The bridge's database, as the benchmark reads it."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.postgresql = self.engine.dialect.name == "postgresql"

    def _one(self, sql: str) -> tuple[int, ...]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(sql)).one()
        return tuple(int(value) for value in row)

    def readings(self) -> int:
        """Readings committed."""
        return self._one("select count(*) from readings")[0]

    def stored(self) -> tuple[int, int]:
        """Rows of readings, and distinct readings among them (``STORED_SQL``)."""
        rows, distinct = self._one(STORED_SQL)
        return rows, distinct

    def rows(self) -> int:
        """The rows of every table the bridge has created."""
        with self.engine.connect() as conn:
            return sum(int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one())
                       for name in sa.inspect(conn).get_table_names())

    def writes(self) -> tuple[int, int] | None:
        """PostgreSQL's count of the rows inserted, updated and deleted, and of the readings inserted, since the
        database was created; None on SQLite, which counts neither."""
        if not self.postgresql:
            return None
        written, readings = self._one(WRITES_SQL)
        return written, readings

    def writes_since(self, before: tuple[int, int] | None, readings: int) -> int | None:
        """The rows written since ``before`` (``writes()``), once PostgreSQL counts the ``readings`` inserted
        since; None on SQLite."""
        deadline = time.monotonic() + STATS_TIMEOUT_S
        while before is not None and (now := self.writes()) is not None:
            if now[1] - before[1] >= readings:
                return now[0] - before[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL's statistics count {now[1] - before[1]:,} of the {readings:,} "
                                   f"readings inserted after {STATS_TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)
        return None

    def close(self) -> None:
        """Close its connections."""
        self.engine.dispose()


@contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """The URL of a new database: a SQLite file in ``workdir``, or a database on the local PostgreSQL, dropped
    afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'spc.db'}"
        return
    name = f"spc_scaling_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=POSTGRES_CONNECT_TIMEOUT_S) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.format(name=name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=POSTGRES_CONNECT_TIMEOUT_S) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Measured:
    """One drain: ``processes`` bridge processes on ``database`` stored ``stored`` readings (``distinct`` of them
    distinct) in ``seconds`` from their start, ``connected`` seconds of which passed before the last of them had
    connected to the broker, adding ``rows`` rows to its tables and, on PostgreSQL, inserting, updating or deleting
    ``writes`` rows (the outbox's events, the chart states and the deliveries included)."""

    processes: int
    database: str
    seconds: float
    connected: float
    stored: int
    distinct: int
    rows: int
    writes: int | None

    @property
    def drain_rate(self) -> float:
        """Readings per second."""
        return self.stored / self.seconds

    @property
    def rows_per_reading(self) -> float:
        """Rows added to the database per reading."""
        return self.rows / self.stored

    @property
    def writes_per_reading(self) -> float | None:
        """Rows inserted, updated or deleted per reading (PostgreSQL only)."""
        return None if self.writes is None else self.writes / self.stored

    def as_json(self) -> dict[str, object]:
        """Its figures; the rates in readings/s and rows/s."""
        writes = self.writes_per_reading
        return {
            "processes": self.processes, "database": self.database, "drain_rate": round(self.drain_rate),
            "rows_per_reading": round(self.rows_per_reading, 3),
            "rows_per_s": round(self.rows_per_reading * self.drain_rate),
            "writes_per_reading": None if writes is None else round(writes, 3),
            "writes_per_s": None if writes is None else round(writes * self.drain_rate),
            "seconds": round(self.seconds, 3), "connected_s": round(self.connected, 3),
            "stored": self.stored, "distinct": self.distinct,
        }


def _launch(bridges: Sequence[_Bridge]) -> None:
    for bridge in bridges:
        bridge.process.launch()


def _stop(bridges: Sequence[_Bridge]) -> None:
    """Stop each with SIGTERM (System.stop: SIGKILL after a bounded wait); raise if one did not exit cleanly."""
    # all at once: one still running while another stops would take the partition it leaves
    for bridge in bridges:
        bridge.process.terminate()
    for bridge in bridges:
        bridge.stop()


def _wait_online(bridges: Sequence[_Bridge]) -> None:
    """Wait until each has logged a partition online: every subscription of it granted."""
    for bridge in bridges:
        child = bridge.process
        child.wait_until(lambda: ONLINE.search(child.output()) is not None, START_TIMEOUT_S)


def _wait_stored(db: _Database, bridges: Sequence[_Bridge], count: int, progress: Progress) -> tuple[float, float]:
    """Wait while every bridge runs until the database holds ``count`` readings; when it did, and when the last
    bridge was seen connected to the broker (time.monotonic)."""
    timeout = 60.0 + count / DRAIN_RATE_FLOOR
    deadline = time.monotonic() + timeout
    connected: dict[int, float] = {}
    while (stored := db.readings()) < count:
        for n, bridge in enumerate(bridges):
            if not bridge.process.running:
                raise RuntimeError(f"{bridge.name} exited during the drain:\n{bridge.process.output()[-3000:]}")
            if n not in connected and CONNECTED in bridge.process.output():
                connected[n] = time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the drain: {stored:,} of {count:,} readings stored after {timeout:.0f} s")
        progress.tick(f"{stored:,}/{count:,} readings stored")
        time.sleep(POLL_S)
    done = time.monotonic()
    return done, max(connected.values(), default=done)


def _drain(bridges: Sequence[_Bridge], database: str, db_url: str, url: str, workload: Workload, backlog: int,
           progress: Progress) -> Measured:
    """Create the bridges' sessions, queue ``backlog`` readings on them, and time their drain."""
    label = f"{len(bridges)} bridge process{'es' if len(bridges) > 1 else ''} on {database}"
    progress.phase(f"{label}: creating their sessions")
    _launch(bridges)
    _wait_online(bridges)
    _stop(bridges)
    db = _Database(db_url)
    try:
        rows, writes = db.rows(), db.writes()
        progress.phase(f"{label}: queueing {backlog:,} QoS 1 readings while they are stopped")
        load = Load(workload.publishers(Options.gauges), 1, count=backlog, qos=1)
        with run_load(url, workload, load) as published:
            progress.phase(f"{label}: draining {published.published:,} readings")
            started = time.monotonic()
            _launch(bridges)
            done, connected = _wait_stored(db, bridges, published.published, progress)
        _stop(bridges)
        stored, distinct = db.stored()
        check_stored_once(stored, distinct, published.published)
        return Measured(len(bridges), database, done - started, connected - started, stored, distinct,
                        db.rows() - rows, db.writes_since(writes, stored))
    finally:
        db.close()


def measure(workdir: Path, workload: Workload, backlog: int, processes: int, database: str,
            progress: Progress) -> Measured:
    """The drain of ``backlog`` queued readings by ``processes`` bridge processes on a fresh ``database``
    (postgresql or sqlite), with a Mosquitto of its own in ``workdir`` (created)."""
    workdir.mkdir()
    config = workload.write_config(workdir / "characteristics.toml")
    broker = start_mosquitto(workdir)
    try:
        with fresh_database(database, workdir) as db_url:
            bridges = [_Bridge(workdir, broker.url, db_url, config, client_id(broker.url, "scaling"),
                               f"scaling-{n}", processes) for n in range(1, processes + 1)]
            try:
                return _drain(bridges, database, db_url, broker.url, workload, backlog, progress)
            finally:
                for bridge in bridges:
                    bridge.process.stop()
    finally:
        broker.stop()


# the human table's columns (heading, JSON field), each WIDTH characters wide
COLUMNS = (("processes", "processes"), ("database", "database"), ("readings/s", "drain_rate"),
           ("rows/reading", "rows_per_reading"), ("rows/s", "rows_per_s"), ("writes/reading", "writes_per_reading"),
           ("writes/s", "writes_per_s"), ("seconds", "seconds"), ("connected", "connected_s"), ("stored", "stored"),
           ("distinct", "distinct"))
WIDTH = 14


def _cell(value: object) -> str:
    """A figure as the table shows it: whole numbers with thousands separators, "-" for none."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


@dataclass(frozen=True)
class Scaling:
    """Every drain of a run, over ``characteristics`` characteristics with ``backlog`` readings queued."""

    characteristics: int
    backlog: int
    runs: list[Measured]

    def as_json(self) -> dict[str, object]:
        """The run for machines."""
        return {"characteristics": self.characteristics, "backlog": self.backlog, "machine": machine(),
                "runs": [run.as_json() for run in self.runs]}

    def table(self) -> str:
        """The run for people."""
        lines = [f"spc-bridge scaling: {self.characteristics:,} characteristics, {self.backlog:,} queued QoS 1 "
                 f"readings drained from the processes' start, {machine()}",
                 "  ".join(f"{head:>{WIDTH}}" for head, _ in COLUMNS)]
        for run in self.runs:
            figures = run.as_json()
            lines.append("  ".join(f"{_cell(figures[key]):>{WIDTH}}" for _, key in COLUMNS))
        lines.append("rows: added to the database's tables; writes: rows inserted, updated or deleted (PostgreSQL's "
                     "statistics: outbox events, chart states, deliveries); connected: seconds from the start until "
                     "the last process had connected")
        return "\n".join(lines)


def _processes(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of process counts such as 1,2,3")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the drains on PostgreSQL, one per process count, then one on SQLite; print the table (or JSON)."""
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.scaling",
                                     description="The drain rate of a queued backlog by bridge processes sharing the "
                                                 "partitions of one bridge on PostgreSQL, beside one on SQLite.")
    parser.add_argument("--characteristics", type=int, default=1000, metavar="N",
                        help="configured characteristics (default 1000)")
    parser.add_argument("--backlog", type=int, default=50_000, metavar="N",
                        help="readings queued for each drain (default 50,000)")
    parser.add_argument("--processes", type=_processes, default=(1, 2, 3), metavar="P,...",
                        help="bridge processes of the PostgreSQL drains, one drain per count (default 1,2,3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.backlog < 1 or args.characteristics < max(args.processes):
        parser.error("--backlog must be positive and --characteristics at least the most --processes")
    workload = Workload(args.characteristics)
    progress = Progress()
    runs = [(processes, "postgresql") for processes in args.processes] + [(1, "sqlite")]
    with tempfile.TemporaryDirectory(prefix="spc-scaling-") as tmp:
        try:
            measured = [measure(Path(tmp) / f"run-{n}", workload, args.backlog, processes, database, progress)
                        for n, (processes, database) in enumerate(runs, start=1)]
        finally:
            progress.done()
    scaling = Scaling(args.characteristics, args.backlog, measured)
    print(json.dumps(scaling.as_json()) if args.json else scaling.table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
