"""A batch's pending rows and events, and the writer that stores them in one transaction.

Events of samples and violations need the database ids of their rows, which exist only once the
rows are inserted: they wait as typed pending events (a sample's, a violation's, or one already
complete) and are completed by :meth:`Batch.events` once the ids are known.
"""

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

from pydantic_core import to_json
from sqlalchemy.engine import Connection

from bridge.service import events
from bridge.service.messages import Event, Inbound
from bridge.service.registry import Characteristic
from bridge.spc import ChartSpec
from bridge.store import queries
from bridge.store.schema import readings, rejects


def json_text(value: Any) -> str:
    """Compact JSON: pydantic-core writes it two to five times as fast as json.dumps, and every
    reading stores its measurements and its characteristic's state."""
    return to_json(value).decode()


class Ids(NamedTuple):
    """Database ids of a batch's samples (by characteristic and idx) and violations (by position)."""

    samples: dict[tuple[int, int], int]
    violations: list[int]
    violation_rows: list[dict[str, Any]]


NO_IDS = Ids({}, [], [])


class SampleEvent(NamedTuple):
    """``spc/<id>/sample`` of a sample row, as it was when the sample arrived."""

    key: tuple[int, int]  # (characteristic, idx)
    row: dict[str, Any]
    spec: ChartSpec
    seq: str | int | None


class ViolationEvent(NamedTuple):
    """``spc/<id>/violation`` of the batch's ``position``-th violation."""

    position: int


class Pending(NamedTuple):
    """An event of the batch in publication order; its payload, or what builds it from the ids."""

    topic: str
    retain: bool
    body: str | SampleEvent | ViolationEvent


def _payload(body: str | SampleEvent | ViolationEvent, ids: Ids) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, SampleEvent):
        return events.sample_event(ids.samples[body.key], body.row, body.spec, body.seq)
    return events.violation_event(ids.violations[body.position], ids.violation_rows[body.position])


class Batch:
    """Rows and events collected while one batch is evaluated, before ids exist."""

    def __init__(self) -> None:
        self.samples: list[dict[str, Any]] = []
        self.sample_at: dict[tuple[int, int], int] = {}   # (characteristic, idx) -> position
        self.judged: list[dict[str, Any]] = []   # verdicts on samples of earlier batches
        self.readings: list[dict[str, Any]] = []
        self.violations: list[tuple[int, int, Any]] = []   # (characteristic, idx, Violation)
        self.rejects: list[dict[str, Any]] = []
        self.deliveries: dict[int, dict[str, Any]] = {}  # by packet id
        self.requests: list[tuple[Inbound, str, str]] = []  # (message, user, command)
        self.pending: list[Pending] = []
        self.now = time.monotonic()
        self.full: Counter[str] = Counter()  # rejects kept in full, by budget (RejectLimiter)
        self.suppressed: Counter[str] = Counter()  # rejects only counted
        self.classes: Counter[str] = Counter()  # rejects, stored or counted, by class (bridge.service.listener)
        self.messages = 0  # ingest messages processed (not commands, not resends of a delivery)
        self.commands = 0  # messages on the request topics
        self.acknowledged = 0  # violations acknowledged by the batch's commands

    def event(self, topic: str, payload: str, retain: bool = False) -> None:
        """Add an event whose payload is complete."""
        self.pending.append(Pending(topic, retain, payload))

    def add_events(self, ready: Iterable[Event]) -> None:
        """Add complete events."""
        self.pending += [Pending(e.topic, e.retain, e.payload) for e in ready]

    def sample(self, topic: str, key: tuple[int, int], row: dict[str, Any], spec: ChartSpec,
               seq: str | int | None) -> None:
        """Add a new sample row and its event (the verdict as it arrived, a copy of the row)."""
        self.sample_at[key] = len(self.samples)
        self.samples.append(row)
        self.pending.append(Pending(topic, False, SampleEvent(key, dict(row), spec, seq)))

    def violation(self, topic: str, characteristic_id: int, idx: int, violation: Any) -> None:
        """Add a violation of sample ``idx`` and its event."""
        self.pending.append(Pending(topic, False, ViolationEvent(len(self.violations))))
        self.violations.append((characteristic_id, idx, violation))

    def events(self, ids: Ids) -> list[Event]:
        """Every event of the batch, complete, in publication order."""
        return [Event(p.topic, _payload(p.body, ids), p.retain) for p in self.pending]


def write_measurements(conn: Connection, batch: Batch) -> Ids:
    """Insert the batch's samples, verdicts, readings and violations; their ids."""
    sample_ids = dict(zip(((r["characteristic_id"], r["idx"]) for r in batch.samples),
                          queries.insert_samples(conn, batch.samples)))
    sample_ids.update(queries.update_judged_samples(conn, batch.judged))
    queries.insert_rows(conn, readings, batch.readings)
    violation_rows = [
        {"characteristic_id": cid, "sample_id": sample_ids[(cid, idx)], "rule_id": v.rule_id,
         "rule_name": v.rule_name, "severity": v.severity, "chart": v.chart, "acknowledged": False}
        for cid, idx, v in batch.violations]
    return Ids(sample_ids, queries.insert_violations(conn, violation_rows), violation_rows)


def write_records(conn: Connection, batch: Batch, touched: Iterable[Characteristic]) -> None:
    """Insert the batch's rejects and deliveries and save the state of the characteristics it touched."""
    queries.insert_rows(conn, rejects, batch.rejects)
    queries.record_deliveries(conn, list(batch.deliveries.values()))
    queries.save_states(conn, [
        {"characteristic_id": ch.id, "state": json_text(ch.assembler.evaluator.state()),
         "pending": json_text(ch.assembler.pending)} for ch in touched])
