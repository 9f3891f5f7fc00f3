"""What commands reach through their context: the characteristics' charts, and subscription changes that
are made on the broker once their batch is committed (and never when it is not)."""

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from queue import SimpleQueue
from typing import Any

import pytest

from bridge.config import parse_broker_url
from bridge.service import commands
from bridge.service.command_context import CommandContext
from bridge.service.messages import Event, Inbound
from bridge.service.mqtt import MqttLink
from bridge.service.pipeline import Pipeline
from bridge.store.queries import create_tables, open_database
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


@pytest.fixture
def pipeline(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """A started pipeline whose command table has the test command ``resubscribe``."""
    monkeypatch.setitem(commands._COMMANDS, "resubscribe", _resubscribe)
    engine = open_database(database)
    create_tables(engine)
    started = Pipeline(engine, "test-bridge", CHARACTERISTICS)
    started.start()
    try:
        yield started
    finally:
        engine.dispose()


def _request(payload: bytes) -> Inbound:
    return Inbound("spc/bridge/request/operator/resubscribe", payload, datetime.now(timezone.utc), None, 1)


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
