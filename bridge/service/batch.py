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

from bridge.contract import LimitSetId, LimitsEvent
from bridge.service import events
from bridge.service.messages import Event, Inbound
from bridge.service.registry import Characteristic
from bridge.spc import ChartSpec
from bridge.store import audit, limit_sets, queries
from bridge.store.limit_sets import LimitSetRef
from bridge.store.schema import readings, rejects


def json_text(value: Any) -> str:
    """Compact JSON: pydantic-core writes it two to five times as fast as json.dumps, and every
    reading stores its measurements and its characteristic's state."""
    return to_json(value).decode()


class Ids(NamedTuple):
    """Database ids of a batch's samples (by characteristic and idx), violations and new limit sets (by
    position)."""

    samples: dict[tuple[int, int], int]
    violations: list[int]
    violation_rows: list[dict[str, Any]]
    limit_sets: list[LimitSetRef]


NO_IDS = Ids({}, [], [], [])
AUDITED = ("phase", "center", "ucl", "lcl")  # of a limit set, as the workflow's commands audit them


class SampleEvent(NamedTuple):
    """``spc/<id>/sample`` of a sample row, as it was when the sample arrived."""

    key: tuple[int, int]  # (characteristic, idx)
    row: dict[str, Any]
    spec: ChartSpec
    seq: str | int | None


class ViolationEvent(NamedTuple):
    """``spc/<id>/violation`` of the batch's ``position``-th violation."""

    position: int


class NewLimitSet(NamedTuple):
    """A limit set the batch's samples made (a baseline completed): its row, stored with the samples,
    whose first (characteristic, idx), if known, gives its ``effective_from``."""

    ch: Characteristic
    row: dict[str, Any]
    first: tuple[int, int] | None


class LimitsEventOf(NamedTuple):
    """``spc/<id>/limits`` of the batch's ``position``-th new limit set, which names it."""

    event: LimitsEvent
    position: int


class Pending(NamedTuple):
    """An event of the batch in publication order; its payload, or what builds it from the ids."""

    topic: str
    retain: bool
    body: str | SampleEvent | ViolationEvent | LimitsEventOf


def _payload(body: str | SampleEvent | ViolationEvent | LimitsEventOf, ids: Ids) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, SampleEvent):
        return events.sample_event(ids.samples[body.key], body.row, body.spec, body.seq)
    if isinstance(body, LimitsEventOf):
        ref = ids.limit_sets[body.position]
        return body.event.model_copy(update={"limit_set": LimitSetId(id=ref.id, version=ref.version),
                                             "effective_from": ref.effective_from}).model_dump_json()
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
        self.limit_sets: list[NewLimitSet] = []
        # by characteristic: the first sample judged by the limit set that a command made in an earlier batch
        self.first_samples: dict[int, tuple[Characteristic, tuple[int, int]]] = {}
        self.pending: list[Pending] = []
        self.now = time.monotonic()
        self.full: Counter[str] = Counter()  # rejects kept in full, by budget (RejectLimiter)
        self.suppressed: Counter[str] = Counter()  # rejects only counted
        self.classes: Counter[str] = Counter()  # rejects, stored or counted, by class (bridge.service.listener)
        self.messages = 0  # ingest messages processed (not commands, not resends of a delivery)
        self.commands = 0  # messages on the request topics
        self.acknowledged = 0  # violations acknowledged by the batch's commands
        self.ack_characteristics: list[int] = []  # the characteristics of those violations
        self.judged_samples: list[tuple[Characteristic, bool | None, str]] = []  # (ch, in_control, received at)

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

    def limit_set(self, topic: str, new: NewLimitSet, event: LimitsEvent) -> None:
        """Add a new limit set and its limits event."""
        self.pending.append(Pending(topic, True, LimitsEventOf(event, len(self.limit_sets))))
        self.limit_sets.append(new)

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
    return Ids(sample_ids, queries.insert_violations(conn, violation_rows), violation_rows,
               write_limit_sets(conn, batch, sample_ids))


def write_limit_sets(conn: Connection, batch: Batch, sample_ids: dict[tuple[int, int], int]) -> list[LimitSetRef]:
    """Insert the batch's new limit sets, each effective from its first sample, with their audit rows;
    they are now in force."""
    if not batch.limit_sets:
        return []
    rows = [{**new.row, "effective_from": sample_ids.get(new.first) if new.first is not None else None}
            for new in batch.limit_sets]
    refs = limit_sets.insert_many(conn, rows)
    audit.append(conn, [audit.entry(row["created_at"], row["user"], f"limits.{row['cause']}", row["characteristic_id"],
                                    {"limit_set": row["version"] - 1} if row["version"] > 1 else None,
                                    {"limit_set": row["version"], **{key: row[key] for key in AUDITED}}, row["reason"])
                        for row in rows])
    for new, ref in zip(batch.limit_sets, refs):
        if new.ch.limit_set is not None and new.ch.limit_set.version == ref.version:
            new.ch.limit_set = ref
    return refs


def write_records(conn: Connection, batch: Batch, touched: Iterable[Characteristic]) -> None:
    """Insert the batch's rejects and deliveries and save the state of the characteristics it touched."""
    queries.insert_rows(conn, rejects, batch.rejects)
    queries.record_deliveries(conn, list(batch.deliveries.values()))
    queries.save_states(conn, [
        {"characteristic_id": ch.id, "state": json_text(ch.assembler.evaluator.state()),
         "pending": json_text(ch.assembler.pending)} for ch in touched])
