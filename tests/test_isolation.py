"""The pipeline on a real database (SQLite and PostgreSQL): a message that cannot be processed is
rejected alone and the rest of its batch commits; an unreachable database holds the batch for a
retry; resends, conflicts and retained replays are told apart; and a fuzz of the whole decode ->
evaluate -> store path never lets an exception escape as a stall."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from bridge.config import CharacteristicConfig
from bridge.contract import ERRORS_TOPIC, request_topic
from bridge.service.messages import Inbound
from bridge.service.pipeline import Pipeline
from bridge.service.reject_limits import RejectLimiter
from bridge.store.queries import create_tables, open_database
from tests.brokers import BrokerHandle, MqttProbe
from tests.conftest import POSTGRES_ADMIN
from tests.processes import bridge_process
from tests.stream import query, write_config

POISON = 666.0  # the value a database trigger refuses: a real failure of the real database
CHARACTERISTICS = [
    CharacteristicConfig(id=1, name="imr", topic="t/imr", chart="imr", baseline=3),
    CharacteristicConfig(id=2, name="xbar", topic="t/xbar", chart="xbar_r", subgroup_size=3, baseline=3),
    CharacteristicConfig(id=3, name="p", topic="t/p", chart="p", subgroup_size=20, baseline=3),
    CharacteristicConfig(id=4, name="c", topic="t/c", chart="c", baseline=3),
    CharacteristicConfig(id=5, name="u", topic="t/u", chart="u", subgroup_size=5, baseline=3),
]
TOPICS = [c.topic for c in CHARACTERISTICS]
_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER poison BEFORE INSERT ON readings WHEN NEW.measurements = '[666.0]'"
        " BEGIN SELECT RAISE(ABORT, 'the poison value'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN"
        " IF NEW.measurements = '[666.0]' THEN RAISE EXCEPTION 'the poison value'; END IF;"
        " RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER poison BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION poison()",
    ],
}


def add_poison_trigger(engine: sa.Engine) -> None:
    """Make the database refuse any reading of the measurement POISON, as a real failure would."""
    create_tables(engine)
    with engine.begin() as conn:
        for statement in _TRIGGERS[engine.dialect.name]:
            conn.execute(sa.text(statement))


class Feed:
    """A started pipeline and its database, fed with messages as the MQTT link would hand them over."""

    def __init__(self, url: str) -> None:
        self.engine = open_database(url)
        add_poison_trigger(self.engine)
        self.pipeline = Pipeline(self.engine, "test-bridge", CHARACTERISTICS)
        self.pipeline.reject_limits = RejectLimiter(full_per_window=10**9)
        self.pipeline.start()
        self.mid = 0

    def message(self, topic: str, payload: bytes | str, *, redelivered: bool = False,
                retained: bool = False, mid: int | None = None) -> Inbound:
        """An inbound QoS 1 message; a new packet id unless ``mid`` is given."""
        if mid is None:
            self.mid += 1
            mid = self.mid
        body = payload.encode() if isinstance(payload, str) else payload
        return Inbound(topic, body, datetime.now(timezone.utc), None, mid, redelivered, retained)

    def count(self, table: str) -> int:
        """Rows in ``table``."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

    def reasons(self) -> list[str]:
        """Every stored reject reason, oldest first."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT reason FROM rejects ORDER BY id")).scalars())


@pytest.fixture
def feed(database: str) -> Iterator[Feed]:
    """A pipeline on a fresh database of each kind."""
    fed = Feed(database)
    try:
        yield fed
    finally:
        fed.engine.dispose()


def test_a_failing_message_is_rejected_alone_and_its_batch_commits(feed: Feed) -> None:
    """One message the database refuses, amid 40 good ones: 40 readings stored, one reject with the
    database's reason, every message acknowledged, and the engine state consistent afterwards."""
    batch = [feed.message("t/imr", json.dumps({"value": 10 + i % 3, "seq": i})) for i in range(40)]
    batch.insert(17, feed.message("t/imr", str(POISON)))
    done = feed.pipeline.process(batch)
    assert (len(done.handled), done.retry) == (41, [])
    assert feed.count("readings") == 40
    [reason] = feed.reasons()
    assert reason.startswith("internal error: ") and "the poison value" in reason
    errors = [json.loads(e.payload) for e in done.events if e.topic == ERRORS_TOPIC]
    assert [e["reason"] for e in errors] == [reason]
    samples = [json.loads(e.payload) for e in done.events if e.topic == "spc/1/sample"]
    assert len(samples) == 40 and len({s["sample_id"] for s in samples}) == 40
    # the characteristic goes on from its committed state: the next reading is sample 41
    more = feed.pipeline.process([feed.message("t/imr", '{"value": 11, "seq": 100}')])
    assert [json.loads(e.payload)["sample_id"] for e in more.events if e.topic == "spc/1/sample"] == [
        max(s["sample_id"] for s in samples) + 1]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_unreachable_database_holds_the_batch_for_a_retry(feed: Feed) -> None:
    """While the database refuses connections nothing is rejected or acknowledged; once it is back the
    same batch commits in full."""
    name = make_url(str(feed.engine.url)).database
    batch = [feed.message("t/imr", json.dumps({"value": 10, "seq": i})) for i in range(10)]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            done = feed.pipeline.process(batch)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert (done.handled, done.events, len(done.retry)) == ([], [], 10)
    again = feed.pipeline.process(done.retry)
    assert (len(again.handled), again.retry) == (10, [])
    assert (feed.count("readings"), feed.count("rejects")) == (10, 0)


def test_resends_conflicts_and_retained_replays(feed: Feed) -> None:
    """A seq or timestamp sent again with the same value is a resend; with another value a reject that
    says so; 17 and "17" are one seq; a retained replay of a stored reading is not stored again."""
    first = [
        feed.message("t/imr", '{"value": 10.0, "seq": 17}'),
        feed.message("t/imr", '{"value": 10.0, "ts": "2026-11-26T10:00:00Z"}'),
        feed.message("t/imr", "10.25"),
    ]
    assert len(feed.pipeline.process(first).handled) == 3
    again = [
        feed.message("t/imr", '{"value": 10.0, "seq": "17"}'),                      # resend
        feed.message("t/imr", '{"value": 10.0, "ts": "2026-11-26T10:00:00+00:00"}'),  # same instant
        feed.message("t/imr", "10.25", retained=True),                               # retained replay
        feed.message("t/imr", '{"value": 11.0, "seq": 17}'),                         # conflict
        feed.message("t/imr", '{"value": 12.0, "ts": "2026-11-26T10:00:00Z"}'),      # conflict
        feed.message("t/imr", "10.25"),                                              # a new reading
    ]
    duplicates = feed.pipeline.duplicates
    assert len(feed.pipeline.process(again).handled) == 6
    assert feed.pipeline.duplicates - duplicates == 3
    assert feed.count("readings") == 4
    assert feed.reasons() == ["seq 17 already stored with another value",
                              "ts 2026-11-26T10:00:00+00:00 already stored with another value"]


def test_rejects_are_bounded_per_topic(feed: Feed) -> None:
    """A flood of bad messages on one topic: the first rejects of its window are stored and published
    in full, the rest counted into one summary reject once the window is over; another topic's
    rejects keep their own budget."""
    feed.pipeline.reject_limits = RejectLimiter(full_per_window=5, window_s=0.5)
    flood = feed.pipeline.process([feed.message("t/imr", "garbage") for _ in range(30)])
    other = feed.pipeline.process([feed.message("t/c", "garbage")])
    assert len([e for e in flood.events if e.topic == ERRORS_TOPIC]) == 5
    assert len([e for e in other.events if e.topic == ERRORS_TOPIC]) == 1
    assert feed.count("rejects") == 6 and feed.pipeline.rejected == 31
    time.sleep(0.6)
    feed.pipeline.process([feed.message("t/imr", "10.0")])
    assert feed.reasons()[-1].startswith("25 more rejects on this topic were counted but not stored")


def test_redeliveries(feed: Feed) -> None:
    """A DUP with the packet id and content of a processed delivery is that delivery; a DUP under a
    new packet id (RabbitMQ renumbers redeliveries) is recognised by its reading's key."""
    feed.pipeline.process([feed.message("t/imr", "10.5", mid=7), feed.message("t/imr", '{"value": 1, "seq": 3}')])
    feed.pipeline.process([feed.message("t/imr", "10.5", mid=7, redelivered=True),
                           feed.message("t/imr", '{"value": 1, "seq": 3}', mid=1, redelivered=True)])
    assert feed.count("readings") == 2
    feed.pipeline.process([feed.message("t/imr", "10.5", mid=2, redelivered=True)])  # never processed
    assert feed.count("readings") == 3


def test_renumbered_redeliveries(feed: Feed) -> None:
    """With ``--redelivered-ids renumbered`` a DUP is never taken for an earlier delivery by its packet id
    and content: RabbitMQ sends a message it never had acknowledged under an id the connection before
    used, maybe for the same payload. A reading with a key is still recognised by it. The deliveries
    recorded before are forgotten: a later run that trusts packet ids again matches none of them."""
    def restart(ids_kept: bool) -> None:
        feed.pipeline = Pipeline(feed.engine, "test-bridge", CHARACTERISTICS, ids_kept=ids_kept)
        feed.pipeline.start()

    feed.pipeline.process([feed.message("t/imr", "10.5", mid=1)])  # recorded: ids are kept
    restart(ids_kept=False)
    feed.pipeline.process([feed.message("t/imr", "10.5", mid=1), feed.message("t/imr", '{"value": 1, "seq": 3}')])
    feed.pipeline.process([feed.message("t/imr", "10.5", mid=1, redelivered=True),  # another 10.5
                           feed.message("t/imr", '{"value": 1, "seq": 3}', mid=2, redelivered=True)])
    assert feed.count("readings") == 4 and feed.pipeline.duplicates == 1
    restart(ids_kept=True)
    feed.pipeline.process([feed.message("t/imr", "10.5", mid=1, redelivered=True)])
    assert feed.count("readings") == 5


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_bridge_waits_for_an_unreachable_database(broker: BrokerHandle, database: str, tmp_path: Path) -> None:
    """Started while its database refuses connections, the bridge says so and retries with backoff;
    once the database is back it starts and stores readings."""
    name = make_url(database).database
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        bridge = bridge_process(tmp_path, broker.url("bridge"), database, write_config(tmp_path))

        def allow_once_refused() -> None:
            """Let the bridge in once it has said that it waits (however long its start takes)."""
            deadline = time.monotonic() + 60
            while "next attempt in" not in bridge.output() and time.monotonic() < deadline:
                time.sleep(0.1)
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

        back = threading.Thread(target=allow_once_refused)
        back.start()
        try:
            bridge.start()  # ready once connected to the broker, which comes after the database
            with MqttProbe(broker, "tcp") as probe:
                probe.subscribe("spc/1/sample")
                probe.publish("line/seq", '{"value": 10.0, "seq": 1}')
                assert probe.wait_for("spc/1/sample", 1, timeout=15)
            log = bridge.output()
            assert "unreachable" in log and "next attempt in" in log and "Traceback" not in log
        finally:
            back.join(10)
            bridge.stop()


@pytest.mark.serial
def test_poison_amid_a_live_stream(broker: BrokerHandle, database: str, tmp_path: Path) -> None:
    """The real bridge: a gauge's messages that the database refuses, sent among another gauge's
    readings, are each rejected with the database's reason; every good reading is stored once and
    its sample event comes at normal latency; the bridge keeps running."""
    engine = open_database(database)
    add_poison_trigger(engine)
    engine.dispose()
    config = tmp_path / "characteristics.toml"
    config.write_text('[[characteristic]]\nid = 1\nname = "good"\ntopic = "t/good"\nchart = "imr"\n'
                      '[[characteristic]]\nid = 2\nname = "poisoned"\ntopic = "t/bad"\nchart = "imr"\n')
    bridge = bridge_process(tmp_path, broker.url("bridge"), database, config)
    bridge.start()
    try:
        with MqttProbe(broker, "tcp") as probe:
            probe.subscribe("spc/1/sample")
            probe.subscribe("spc/bridge/errors")
            latencies = []
            for seq in range(150):
                sent = time.monotonic()
                probe.publish("t/good", json.dumps({"value": 10 + seq % 5, "seq": seq}))
                if seq % 10 == 5:
                    probe.publish("t/bad", json.dumps({"value": POISON, "seq": seq}))
                probe.wait_for("spc/1/sample", seq + 1, timeout=10)
                latencies.append(time.monotonic() - sent)
            errors = probe.wait_for("spc/bridge/errors", 15, timeout=15)
        assert max(latencies) < 2.0, f"a good reading waited {max(latencies):.2f} s"
        assert len(errors) == 15
        assert all("internal error" in json.loads(e.payload)["reason"] for e in errors)
        assert query(database, "select count(*), count(distinct seq) from readings") == [(150, 150)]
        reasons = query(database, "select topic, reason from rejects")
        assert len(reasons) == 15 and all(t == "t/bad" and "the poison value" in r for t, r in reasons)
        assert bridge.proc is not None and bridge.proc.poll() is None
    finally:
        bridge.stop()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["value", "values", "count", "n", "ts", "seq", "id", "violation_id",
                         "characteristic_id", "limit", "reason", "transaction"]),
        children, max_size=5),
    max_leaves=15)
_PAYLOADS = st.one_of(
    st.binary(max_size=60),
    _JSON.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.integers(-10**400, 10**400).map(lambda n: str(n).encode()),
    st.integers(1, 6000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.builds(lambda v, s: json.dumps({"value": v, "seq": s}).encode(),
              st.floats(-1e6, 1e6) | st.just(POISON), st.integers(0, 30)),
    st.builds(lambda c, n: json.dumps({"count": c, "n": n}).encode(),
              st.integers(-5, 2**64), st.integers(-5, 2**40)),
)
_TOPICS = st.sampled_from([*TOPICS, "t/imr/", "t/unknown", request_topic("ops", "ack"),
                           request_topic("ops", "history"), request_topic("ops", "x" * 1100)])
_MESSAGES = st.lists(st.tuples(_TOPICS, _PAYLOADS, st.booleans(), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_MESSAGES)
def test_fuzz_no_message_stalls_the_pipeline(feed: Feed, messages: list[tuple[str, bytes, bool, bool]]) -> None:
    """Any batch is handled in full with the database up: every message is stored, rejected, a resend,
    or a command answered; nothing is left to retry and no exception escapes."""
    batch = [feed.message(topic, payload, redelivered=dup, retained=retained)
             for topic, payload, dup, retained in messages]
    before = feed.count("readings"), feed.count("rejects"), feed.pipeline.duplicates
    done = feed.pipeline.process(batch)
    assert (len(done.handled), done.retry) == (len(batch), [])
    readings, rejects = feed.count("readings") - before[0], feed.count("rejects") - before[1]
    commands = sum(1 for m in batch if m.topic.startswith("spc/"))
    assert readings + rejects + feed.pipeline.duplicates - before[2] >= len(batch) - commands
