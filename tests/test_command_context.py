"""What commands reach through their context: the characteristics' charts, and subscription changes that
are made on the broker once their batch is committed (and never when it is not)."""

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from queue import SimpleQueue
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.config import parse_broker_url
from bridge.contract import request_topic, response_topic
from bridge.service import commands
from bridge.service.budget import BURST
from bridge.service.command_context import CommandContext
from bridge.service.messages import Event, Inbound
from bridge.service.mqtt import MqttLink
from bridge.service.pipeline import Pipeline
from bridge.store.instances import Instances
from bridge.store.queries import create_tables, open_database
from bridge.store.schema import instances
from tests.brokers import EmbeddedBrokerThread, MqttProbe
from tests.test_isolation import CHARACTERISTICS


def _resubscribe(conn: Any, user: str, payload: bytes, now: str,
                 context: CommandContext) -> tuple[dict[str, Any], list[Event]]:
    """A command as the workflow's will be: it reads a chart and asks for a subscription change."""
    evaluator = context.evaluator(1)
    assert evaluator is not None and context.evaluator(999) is None
    context.change_subscriptions(["extra/#"], ["t/#"])
    if payload == b'{"fail": true}':
        raise RuntimeError("the command fails after asking")
    return {"phase": evaluator.phase}, []


@contextmanager
def started_pipeline(url: str) -> Iterator[Pipeline]:
    """A pipeline on ``url``, started."""
    engine = open_database(url)
    create_tables(engine)
    started = Pipeline(engine, "test-bridge", CHARACTERISTICS)
    started.start()
    try:
        yield started
    finally:
        engine.dispose()


@pytest.fixture
def pipeline(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """A started pipeline whose command table has the test command ``resubscribe``."""
    monkeypatch.setitem(commands._COMMANDS, "resubscribe", _resubscribe)
    with started_pipeline(database) as started:
        yield started


def _request(payload: bytes, command: str = "resubscribe", delivery_id: int = 1) -> Inbound:
    return Inbound(request_topic("operator", command), payload, datetime.now(timezone.utc), None, delivery_id)


def test_a_committed_command_asks_for_subscription_changes(pipeline: Pipeline) -> None:
    """The change a command asks for is kept for the runner once its batch commits; a command that then
    fails is rolled back with its savepoint and asks for nothing."""
    done = pipeline.process([_request(b"{}")])
    assert '"status":"ok"' in done.events[-1].payload and '"phase":"baseline"' in done.events[-1].payload
    assert pipeline.subscription_changes == [(["extra/#"], ["t/#"])]
    pipeline.subscription_changes.clear()
    failed = pipeline.process([_request(b'{"fail": true}')])
    assert any('"status":"error"' in e.payload for e in failed.events)
    assert pipeline.subscription_changes == []


def test_a_command_holds_its_batch_against_another_writer(pipeline: Pipeline, database: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer of the database (here an instance's heartbeat, as the lease engine sends it) that
    commits after a command has read waits for the batch, and the batch commits: on SQLite the
    command's reads may not leave a snapshot that its batch's first write can no longer use."""
    other = open_database(database)
    heartbeat = threading.Thread(target=Instances(other, "test-bridge", "standby", 5).beat, args=(1,))

    def _read_then_other_writer(conn: Any, _user: str, _payload: bytes, _now: str,
                                _context: CommandContext) -> tuple[dict[str, Any], list[Event]]:
        rows = conn.execute(sa.select(sa.func.count()).select_from(instances)).scalar_one()
        heartbeat.start()
        heartbeat.join(1)  # committed at once unless the batch holds the database
        return {"rows": rows}, []

    monkeypatch.setitem(commands._COMMANDS, "read_then_other_writer", _read_then_other_writer)
    try:
        done = pipeline.process([_request(b"{}", "read_then_other_writer")])
        assert '"status":"ok"' in done.events[-1].payload
        heartbeat.join(15)
        assert not heartbeat.is_alive()
        with other.connect() as conn:
            assert conn.execute(sa.select(instances.c.instance)).scalars().all() == ["standby"]
    finally:
        other.dispose()


def test_a_batch_rolled_back_costs_its_requests_nothing(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """25 requests of one user in a batch whose connection is lost at the 20th: the batch is retried,
    and the retry carries out the user's burst of 20 and answers 5 busy, as if the first try had
    never been (its tokens are given back)."""
    calls = 0

    def _lose_the_connection_at_the_burst(conn: Any, _user: str, _payload: bytes, _now: str,
                                          _context: CommandContext) -> tuple[dict[str, Any], list[Event]]:
        nonlocal calls
        calls += 1
        if calls == BURST:
            conn.connection.dbapi_connection.close()
        return {}, []

    monkeypatch.setitem(commands._COMMANDS, "flaky", _lose_the_connection_at_the_burst)
    requests = [_request(json.dumps({"transaction": k}).encode(), "flaky", 1 + k) for k in range(25)]
    failed = pipeline.process(requests)
    assert failed.events == [] and failed.retry == requests
    done = pipeline.process(failed.retry)
    statuses = Counter(json.loads(e.payload)["status"] for e in done.events if e.topic == response_topic("operator", "flaky"))
    assert statuses == {"ok": 20, "busy": 5} and pipeline.commands.busy == 5


def test_a_command_that_waits_too_long_for_a_lock_is_retried_not_refused(
        postgresql_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a PostgreSQL server with a lock_timeout, a command whose row another transaction keeps locked
    is not answered "refused": its batch is retried, and carried out once the lock is gone."""
    admin = open_database(postgresql_database)
    with admin.begin() as conn:
        name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET lock_timeout = 300'))
    standby = instances.c.instance == "standby"

    def _update_standby(conn: Any, _user: str, _payload: bytes, _now: str,
                        _context: CommandContext) -> tuple[dict[str, Any], list[Event]]:
        return {"rows": conn.execute(instances.update().where(standby).values(room=0)).rowcount}, []

    monkeypatch.setitem(commands._COMMANDS, "update_standby", _update_standby)
    request = _request(b"{}", "update_standby")
    try:
        with started_pipeline(postgresql_database) as pipeline:
            Instances(admin, "test-bridge", "standby", 5).beat(1)
            with admin.begin() as holder:
                holder.execute(sa.select(instances).where(standby).with_for_update()).all()
                waited = pipeline.process([request])
            assert waited.retry == [request] and waited.events == []
            done = pipeline.process(waited.retry)
        assert '"status":"ok"' in done.events[-1].payload and '"rows":1' in done.events[-1].payload
    finally:
        admin.dispose()


def test_the_link_makes_the_changes_on_the_broker(embedded_broker: EmbeddedBrokerThread) -> None:
    """A filter dropped delivers nothing more; a filter added delivers, on this connection."""
    inbox: SimpleQueue[Any] = SimpleQueue()
    link = MqttLink(parse_broker_url(embedded_broker.url("bridge")), "bridge:context-test", inbox, lambda _: None)
    try:
        link.start(["t/#"])
        deadline = time.monotonic() + 10
        while not link.online and time.monotonic() < deadline:
            link.poll(0.05)
        assert link.online
        link.change_subscriptions(["extra/#"], ["t/#"])
        settle = time.monotonic() + 1
        while time.monotonic() < settle:
            link.poll(0.05)
        with MqttProbe(embedded_broker, user="admin") as probe:
            probe.publish("t/imr", b"1")
            probe.publish("extra/x", b"2")
        topics: list[str] = []
        deadline = time.monotonic() + 10
        while "extra/x" not in topics and time.monotonic() < deadline:
            link.poll(0.05)
            topics += [i.topic for i in (inbox.get_nowait() for _ in range(inbox.qsize())) if isinstance(i, Inbound)]
        assert topics == ["extra/x"] and link.topics == ["extra/#"]
    finally:
        link.client.disconnect()
