"""The stages between an MQTT message and its events: route, parse, assemble, evaluate, commit.

One call of :meth:`Pipeline.process` handles a batch in a single transaction: readings, samples,
violations, rejects, the characteristics' engine state and the events (outbox) are committed
together, so after a crash the database never holds a sample without its events or state. Only
after the commit are the messages acknowledged and the events published (by the caller). A batch
that fails to commit is split around the message at fault (bridge.service.isolation).
"""

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from pydantic_core import to_json
from sqlalchemy.engine import Engine

from bridge.assemble import Assembler, Sample
from bridge.config import CharacteristicConfig, Characteristics
from bridge.contract import (
    ERRORS_TOPIC, REQUEST_FILTER, is_ack_topic, limits_topic, sample_topic, violation_topic,
)
from bridge.ingest import IngestError, Reading, parse_reading
from bridge.service import commands, events, subscriptions
from bridge.service.idempotency import describe_key, reading_digest, reading_key
from bridge.service.isolation import Processed, isolate
from bridge.service.listener import (
    BAD_VALUE, COMMAND_ERROR, CONFLICT, INTERNAL_ERROR, RETAINED_COMMAND, SUBSCRIPTION_REFUSED,
    UNKNOWN_TOPIC, NoListener, PipelineListener, ingest_class,
)
from bridge.service.reject_limits import RejectLimiter
from bridge.spc import MONITORING, ChartSpec, Evaluation
from bridge.store import queries
from bridge.store.schema import TOPIC_CHARS, outbox, readings, rejects

log = logging.getLogger(__name__)
REJECT_PAYLOAD_CHARS = 4096
REASON_CHARS = 1000
START_CHUNK = 500  # characteristics set up at a time


class Inbound(NamedTuple):
    """A message as received: the transport's ``token`` is what acknowledging it needs.

    ``delivery_id`` is the MQTT packet id of a QoS 1 message (None at QoS 0) and ``redelivered``
    its DUP flag: the broker is sending it again because it has no PUBACK for it. ``retained`` is
    the RETAIN flag: the broker replays a stored message because a subscription was just made.
    """

    topic: str
    payload: bytes
    received_at: datetime
    token: Any
    delivery_id: int | None = None
    redelivered: bool = False
    retained: bool = False


class Outgoing(NamedTuple):
    """A committed event to publish; ``seq`` orders it in this bridge's outbox."""

    seq: int
    topic: str
    payload: str
    retain: bool


# A broker hands out a packet id again only after tens of thousands of others (Mosquitto and
# amqtt count up to 65535), while a redelivery concerns one of the last in-flight window of
# messages; so a DUP whose id and content match one of the last REDELIVERY_WINDOW deliveries is
# that delivery again.
REDELIVERY_WINDOW = 30_000
RETAINED_WINDOW = 1_000  # a retained message replays one of the topic's recent readings


def _digest(message: Inbound) -> str:
    return hashlib.blake2b(message.topic.encode() + b"\0" + message.payload, digest_size=8).hexdigest()


@dataclass(slots=True)
class Characteristic:
    """A configured characteristic at run time: what running it needs of its configuration."""

    id: int
    spec: ChartSpec
    assembler: Assembler
    published_limits: int = -1  # the evaluator's limits_version last put in the outbox
    limits_at: float = 0.0  # monotonic time the limits event was last put in the outbox


def _sample_payload(key: tuple[int, int], row: dict[str, Any], spec: ChartSpec,
                    seq: str | int | None) -> Callable[["_Ids"], str]:
    """The sample event of ``key``, once its id is known."""
    return lambda ids: events.sample_event(ids.samples[key], row, spec, seq)


def _ready(payload: str) -> Callable[["_Ids"], str]:
    """An event whose payload needs no database id."""
    return lambda _: payload


def _violation_payload(position: int) -> Callable[["_Ids"], str]:
    """The event of the batch's ``position``-th violation, once the ids are known."""
    return lambda ids: events.violation_event(ids.violations[position], ids.violation_rows[position])


def _verdict(ev: Evaluation) -> dict[str, Any]:
    """What the engine said of a sample, by the samples table's columns (queries.VERDICT_COLUMNS)."""
    return {"zone": ev.zone, "in_control": ev.in_control,
            "ucl": ev.limits.ucl if ev.limits is not None else None,
            "lcl": ev.limits.lcl if ev.limits is not None else None,
            "cusum_upper": ev.cusum_upper, "cusum_lower": ev.cusum_lower, "ewma": ev.ewma}


def _json(value: Any) -> str:
    # pydantic-core writes compact JSON two to five times as fast as json.dumps, and every
    # reading stores its measurements and its characteristic's state
    return to_json(value).decode()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _reject_row(topic: str, reason: str, payload: bytes, received_at: datetime) -> dict[str, Any]:
    """A row of the rejects table: the topic and reason, cut to their columns, and the payload's start."""
    return {
        "topic": topic[:TOPIC_CHARS], "reason": reason[:REASON_CHARS], "received_at": received_at,
        "payload": payload[:REJECT_PAYLOAD_CHARS * 4].decode("utf-8", "replace")[:REJECT_PAYLOAD_CHARS],
    }


class _Ids(NamedTuple):
    """Database ids of a batch's samples (by characteristic and idx) and violations (by position)."""

    samples: dict[tuple[int, int], int]
    violations: list[int]
    violation_rows: list[dict[str, Any]]


class _Batch:
    """Rows and events collected while one batch is evaluated, before ids exist."""

    def __init__(self) -> None:
        self.samples: list[dict[str, Any]] = []
        self.sample_at: dict[tuple[int, int], int] = {}   # (characteristic, idx) -> position
        self.judged: list[dict[str, Any]] = []
        self.readings: list[dict[str, Any]] = []
        self.violations: list[tuple[int, int, Any]] = []   # (characteristic, idx, Violation)
        self.rejects: list[dict[str, Any]] = []
        self.deliveries: dict[int, dict[str, Any]] = {}  # by packet id
        self.requests: list[tuple[Inbound, str, str]] = []  # (message, user, command)
        self.keys: dict[int, tuple[str | None, str]] = {}  # id(reading) -> (key, digest)
        self.now = time.monotonic()
        self.full: Counter[str] = Counter()  # rejects kept in full, by budget (RejectLimiter)
        self.suppressed: Counter[str] = Counter()  # rejects only counted
        self.classes: Counter[str] = Counter()  # rejects, stored or counted, by class (bridge.service.listener)
        self.commands = 0  # messages on the request topics
        self.acknowledged = 0  # violations acknowledged by the batch's commands
        # events in publication order: (topic, retain, payload from the ids once they are known)
        self.events: list[tuple[str, bool, Callable[[_Ids], str]]] = []


class Pipeline:
    """Evaluates batches of inbound messages for a set of characteristics and stores them."""

    def __init__(self, engine: Engine, bridge: str, configs: Sequence[CharacteristicConfig],
                 max_payload: int = 65536, capability_interval: float = 10.0) -> None:
        self.engine = engine
        self.bridge = bridge
        self.max_payload = max_payload
        self.capability_interval = capability_interval
        self._configs = list(configs)  # until start(): the pipeline keeps only what runs
        self.ingest_roots = configs.ingest_roots if isinstance(configs, Characteristics) else ()
        self.by_topic: dict[str, Characteristic] = {}
        self.by_id: dict[int, Characteristic] = {}
        self.next_seq = 1
        self.delivered = 0  # counter of the latest delivery recorded
        self.stored = 0  # readings committed by this process
        self.rejected = 0
        self.duplicates = 0
        self.commands = commands.Desk()
        self.reject_limits = RejectLimiter()
        self.listener: PipelineListener = NoListener()  # told what each commit did (metrics)
        self._stale: dict[int, Characteristic] = {}  # touched by a failed batch: reload before use
        self.stale_filters: list[str] = []  # subscriptions a resumed session may hold: to unsubscribe

    @property
    def topics(self) -> list[str]:
        """The filters to subscribe to: the ingest roots (the file's, else derived from the
        characteristics' topics) and the command requests."""
        return [*(self.ingest_roots or subscriptions.derive_roots(self.by_topic)), REQUEST_FILTER]

    def start(self) -> list[Outgoing]:
        """Load the characteristics and their saved state (the tables exist: queries.create_tables)
        and find the stale subscriptions; return every unconfirmed event."""
        configs, self._configs = self._configs, []
        configs.reverse()
        with self.engine.begin() as conn:
            # 0.1 subscribed to each characteristic's topic; later versions record their filters
            earlier = queries.characteristic_topics(conn)
            saved = queries.load_states(conn)
            self.next_seq = queries.next_outbox_seq(conn, self.bridge)
            self.delivered = queries.last_delivery(conn, self.bridge)
            self.listener.on_violations(queries.open_violations(conn), 0)
            # A chunk at a time, each configuration dropped once its characteristic runs: the
            # run-time objects reuse the configurations' memory instead of adding to it.
            while configs:
                chunk = [configs.pop() for _ in range(min(START_CHUNK, len(configs)))]
                queries.sync_characteristics(conn, [
                    {"id": c.id, "name": c.name, "topic": c.topic, "chart": c.chart,
                     "config": c.model_dump_json()} for c in chunk])
                batch = _Batch()
                for config in chunk:
                    state, pending = saved.pop(config.id, (None, None))
                    spec = config.chart_spec()
                    ch = Characteristic(config.id, spec, Assembler(spec, state, pending))
                    self.by_topic[config.topic] = ch
                    self.by_id[config.id] = ch
                    # limits are retained: republish them on every start, a broker may have lost them
                    self._limits(batch, ch)
                del chunk
                self._write_events(conn, batch, _Ids({}, [], []))
            earlier |= queries.replace_subscriptions(conn, self.bridge, self.topics)
            self.stale_filters = sorted(earlier - set(self.topics))
            return [Outgoing(*r) for r in queries.pending_outbox(conn, self.bridge, 0, 10**9)]

    def pending_after(self, seq: int, limit: int) -> list[Outgoing]:
        """Committed events after ``seq`` (to catch up when they were not kept in memory)."""
        with self.engine.connect() as conn:
            return [Outgoing(*r) for r in queries.pending_outbox(conn, self.bridge, seq, limit)]

    def forget_confirmed(self, up_to: int) -> None:
        """Delete the events the broker has acknowledged."""
        with self.engine.begin() as conn:
            queries.delete_confirmed(conn, self.bridge, up_to)

    # ------------------------------------------------------------------ batch
    def process(self, batch: Sequence[Inbound]) -> Processed[Inbound, Outgoing]:
        """Evaluate and commit a batch, rejecting alone any message that cannot be processed; its
        events (to publish after the commit), the messages to acknowledge and those to retry."""
        done = isolate(batch, self._process, self._quarantine,
                       lambda error: queries.unavailable(self.engine, error))
        if done.retry:
            self.listener.on_unavailable(len(done.retry))
        return done

    def _process(self, batch: Sequence[Inbound]) -> list[Outgoing]:
        """Evaluate and commit ``batch`` in one transaction; on failure nothing of it remains."""
        touched: dict[int, Characteristic] = {}
        saved = self.delivered, self.duplicates, self.next_seq
        started = time.perf_counter()
        try:
            with self.engine.begin() as conn:
                self._restore(conn)
                work = _Batch()
                self._summaries(work)
                fresh = self._new_deliveries(conn, work, batch)
                parsed = [p for p in (self._parse(work, m) for m in fresh) if p is not None]
                for message, ch, reading in self._unseen(conn, work, parsed):
                    touched[ch.id] = ch
                    self._accept(work, message, ch, reading)
                out = self._commit(conn, work, touched)
        except Exception:
            self.delivered, self.duplicates, self.next_seq = saved
            self._stale.update(touched)
            raise
        self.stored += len(work.readings)
        self.rejected += len(work.rejects) + sum(work.suppressed.values())
        self.reject_limits.commit(work.now, work.full, work.suppressed)
        self._report(batch, work, time.perf_counter() - started, self.duplicates - saved[1])
        return out

    def _report(self, batch: Sequence[Inbound], work: _Batch, seconds: float, duplicates: int) -> None:
        """Tell the listener what a committed transaction did."""
        listener = self.listener
        listener.on_batch(batch, seconds)
        listener.on_readings(len(batch) - work.commands, len(work.readings), duplicates, work.commands)
        if work.classes:
            listener.on_rejects(work.classes)
        if work.violations or work.acknowledged:
            listener.on_violations(len(work.violations), work.acknowledged)

    def _quarantine(self, message: Inbound, error: Exception) -> list[Outgoing]:
        """Record a message that fails however it is tried as a reject, alone in its transaction."""
        reason = f"internal error: {type(error).__name__}: {error}"[:REASON_CHARS]
        started = time.perf_counter()
        work = _Batch()
        self._reject(work, message, reason, INTERNAL_ERROR)
        out = self._store_rejects(work, [message])
        self._report([message], work, time.perf_counter() - started, 0)
        return out

    def _store_rejects(self, work: _Batch, deliveries: Sequence[Inbound] = ()) -> list[Outgoing]:
        """Commit the rejects of ``work`` (and the deliveries of ``deliveries``) in a transaction of
        their own; their events."""
        saved = self.delivered, self.next_seq
        try:
            with self.engine.begin() as conn:
                self._new_deliveries(conn, work, deliveries)
                queries.insert_rows(conn, rejects, work.rejects)
                queries.record_deliveries(conn, list(work.deliveries.values()))
                out = self._write_events(conn, work, _Ids({}, [], []))
        except Exception:
            self.delivered, self.next_seq = saved
            raise
        self.rejected += len(work.rejects) + sum(work.suppressed.values())
        self.reject_limits.commit(work.now, work.full, work.suppressed)
        return out

    def _restore(self, conn: Any) -> None:
        """Put the characteristics a failed batch touched back to their stored state."""
        if not self._stale:
            return
        saved = queries.load_states(conn, list(self._stale))
        for cid, ch in self._stale.items():
            state, pending = saved.get(cid, (None, None))
            ch.assembler = Assembler(ch.spec, state, pending)
            ch.published_limits = -1 if state is None else ch.assembler.evaluator.limits_version
        self._stale.clear()

    def _summaries(self, work: _Batch) -> None:
        """Rejects of topics whose window of full rejects is over, counting what was not stored."""
        for topic, suppressed in self.reject_limits.ended(work.now):
            if suppressed:
                reason = (f"{suppressed} more rejects on this topic were counted but not stored: only the"
                          f" first {self.reject_limits.full_per_window} each {self.reject_limits.window_s:g} s are")
                self._record_reject(work, topic, reason, b"", datetime.now(timezone.utc), None)

    def _new_deliveries(self, conn: Any, work: _Batch, batch: Sequence[Inbound]) -> list[Inbound]:
        """The messages of ``batch`` that are not redeliveries of messages processed before: a DUP
        whose packet id and content match one of the last REDELIVERY_WINDOW deliveries.

        Content alone cannot tell: after a crash the broker also redelivers, with DUP, messages the
        bridge never processed, whose content may equal a recent reading's. A broker that renumbers
        redeliveries (RabbitMQ) is covered by the readings' keys (seq or ts), not here.
        """
        redelivered = [m.delivery_id for m in batch if m.redelivered and m.delivery_id is not None]
        seen = queries.deliveries_of(conn, self.bridge, redelivered)
        fresh = []
        for message in batch:
            mid = message.delivery_id
            if mid is not None:
                digest = _digest(message)
                prior = seen.get(mid)
                if (message.redelivered and prior is not None and prior[0] == digest
                        and self.delivered - prior[1] < REDELIVERY_WINDOW):
                    self.duplicates += 1
                    continue
                self.delivered += 1
                seen[mid] = (digest, self.delivered)
                work.deliveries[mid] = {"bridge": self.bridge, "mid": mid, "digest": digest,
                                        "counter": self.delivered}
            fresh.append(message)
        return fresh

    def _unseen(self, conn: Any, work: _Batch, parsed: list[tuple[Inbound, Characteristic, Reading]]
                ) -> list[tuple[Inbound, Characteristic, Reading]]:
        """The readings not stored before: a stored key with the same digest is a resend (dropped
        and counted), with another digest a conflict (rejected); a retained replay without a key is
        a resend when one of its characteristic's last RETAINED_WINDOW readings says the same."""
        keyed = [(ch.id, key) for _, ch, r in parsed if (key := reading_key(r)) is not None]
        known = queries.known_keys(conn, keyed)
        replayed = {ch.id for m, ch, r in parsed if m.retained and reading_key(r) is None}
        recent = {cid: queries.recent_digests(conn, cid, RETAINED_WINDOW) for cid in replayed}
        unseen = []
        for message, ch, reading in parsed:
            key, digest = reading_key(reading), reading_digest(reading)
            if key is not None:
                if (ch.id, key) in known:
                    if known[(ch.id, key)] in (digest, None):  # None: stored by 0.1, which kept no digest
                        self.duplicates += 1
                    else:
                        self._reject(work, message, f"{describe_key(key)} already stored with another value",
                                     CONFLICT)
                    continue
                known[(ch.id, key)] = digest
            elif message.retained:
                if digest in recent[ch.id]:
                    self.duplicates += 1
                    continue
                recent[ch.id].add(digest)
            work.keys[id(reading)] = (key, digest)
            unseen.append((message, ch, reading))
        return unseen

    def _parse(self, work: _Batch, message: Inbound) -> tuple[Inbound, Characteristic, Reading] | None:
        request = commands.parse_request_topic(message.topic)
        if request is not None:
            work.commands += 1
            if message.retained and message.payload:  # replayed by the broker: reject it and clear it
                self._reject(work, message, commands.RETAINED_IGNORED, RETAINED_COMMAND)
                work.events += [(t, r, _ready(p)) for t, p, r in commands.clear_retained(message.topic)]
            else:
                work.requests.append((message, *request))
            return None
        ch = self.by_topic.get(message.topic)
        if ch is None:
            self._reject(work, message, f"no characteristic for topic {message.topic}", UNKNOWN_TOPIC)
            return None
        try:
            return message, ch, parse_reading(message.payload, message.received_at, self.max_payload)
        except IngestError as error:
            reason = str(error)
            self._reject(work, message, reason, ingest_class(reason))
            return None

    def _reject(self, work: _Batch, message: Inbound, reason: str, kind: str) -> None:
        self._record_reject(work, message.topic, reason, message.payload, message.received_at, kind)

    def _record_reject(self, work: _Batch, topic: str, reason: str, payload: bytes,
                       received_at: datetime, kind: str | None) -> None:
        """Store and publish a reject, unless its topic has had its full rejects this minute; count
        it by ``kind`` (None: a summary of rejects counted before, not a reject itself)."""
        if kind is not None:
            work.classes[kind] += 1
        budget = self.reject_limits.key(topic)
        if not self.reject_limits.admit(budget, work.now, work.full):
            work.suppressed[budget] += 1
            return
        work.full[budget] += 1
        log.warning("reject on %s: %s", topic[:200], reason, extra={"topic": topic[:200], "reason": reason})
        work.rejects.append(_reject_row(topic, reason, payload, received_at))
        event = events.error_event(topic, reason, payload, _iso(received_at))
        work.events.append((ERRORS_TOPIC, False, _ready(event)))

    def _accept(self, work: _Batch, message: Inbound, ch: Characteristic, reading: Reading) -> None:
        cid = ch.id
        try:
            accepted = ch.assembler.accept(reading)
        except IngestError as error:
            self._reject(work, message, str(error), BAD_VALUE)
            return
        key, digest = work.keys[id(reading)]
        work.readings.append({
            "characteristic_id": cid, "sample_idx": accepted.sample_idx, "seq": reading.seq,
            "reading_key": key, "digest": digest,
            "ts": reading.ts, "received_at": message.received_at,
            "measurements": _json(reading.values) if reading.values is not None else None,
            "count": reading.count, "n": reading.n,
        })
        for sample in accepted.completed:
            self._sample(work, ch, sample, reading.sent_seq() if sample.whole else None)
        evaluator = ch.assembler.evaluator
        if evaluator.limits_version != ch.published_limits or (
                accepted.completed and evaluator.phase == MONITORING
                and (ch.spec.usl is not None or ch.spec.lsl is not None)
                and work.now - ch.limits_at >= self.capability_interval):
            self._limits(work, ch)  # new limits, or a capability that moved with the samples

    def _sample(self, work: _Batch, ch: Characteristic, sample: Sample, seq: str | int | None) -> None:
        cid = ch.id
        evaluator = ch.assembler.evaluator
        for ev in sample.evaluations:
            key = (cid, ev.index)
            verdict = _verdict(ev)
            if ev.index == sample.idx:
                row = {"characteristic_id": cid, "idx": ev.index, "ts": sample.ts, "value": ev.value,
                       "n": ev.n, "spread": ev.spread, **verdict}
                work.sample_at[key] = len(work.samples)
                work.samples.append(row)
                # the event tells the verdict as the sample arrived, whatever the batch holds after it
                work.events.append((sample_topic(cid), False,
                                    _sample_payload(key, dict(row), evaluator.spec, seq)))
            elif key in work.sample_at:  # a baseline sample of this same batch, judged late
                work.samples[work.sample_at[key]].update(verdict)
            else:
                work.judged.append({"cid": cid, "i": ev.index, **verdict})
            for violation in ev.violations:
                work.events.append((violation_topic(cid), False,
                                    _violation_payload(len(work.violations))))
                work.violations.append((cid, ev.index, violation))

    def _limits(self, work: _Batch, ch: Characteristic) -> None:
        evaluator = ch.assembler.evaluator
        ch.published_limits, ch.limits_at = evaluator.limits_version, work.now
        payload = events.limits_event(ch.id, evaluator)
        work.events.append((limits_topic(ch.id), True, _ready(payload)))

    def _commit(self, conn: Any, work: _Batch, touched: dict[int, Characteristic]) -> list[Outgoing]:
        sample_ids = dict(zip(((r["characteristic_id"], r["idx"]) for r in work.samples),
                              queries.insert_samples(conn, work.samples)))
        sample_ids.update(queries.update_judged_samples(conn, work.judged))
        queries.insert_rows(conn, readings, work.readings)
        violation_rows = [
            {"characteristic_id": cid, "sample_id": sample_ids[(cid, idx)], "rule_id": v.rule_id,
             "rule_name": v.rule_name, "severity": v.severity, "chart": v.chart,
             "acknowledged": False}
            for cid, idx, v in work.violations]
        violation_ids = queries.insert_violations(conn, violation_rows)
        self._requests(conn, work)
        queries.insert_rows(conn, rejects, work.rejects)
        queries.record_deliveries(conn, list(work.deliveries.values()))
        queries.save_states(conn, [
            {"characteristic_id": cid, "state": _json(ch.assembler.evaluator.state()),
             "pending": _json(ch.assembler.pending)} for cid, ch in touched.items()])
        return self._write_events(conn, work, _Ids(sample_ids, violation_ids, violation_rows))

    def _requests(self, conn: Any, work: _Batch) -> None:
        """Carry out the batch's commands, after its data is written (acknowledgements need it);
        those over their user's budget or the batch's share are answered busy (commands.Desk)."""
        if not work.requests:
            return
        evaluators = {cid: ch.assembler.evaluator for cid, ch in self.by_id.items()}
        outcomes = self.commands.run(conn, [
            commands.Request(user, command, message.payload, _iso(message.received_at))
            for message, user, command in work.requests], evaluators)
        for (message, _, _), outcome in zip(work.requests, outcomes):
            for topic, payload, retain in outcome.events:
                work.events.append((topic, retain, _ready(payload)))
                work.acknowledged += is_ack_topic(topic)
            if outcome.error is not None:
                self._reject(work, message, outcome.error, COMMAND_ERROR)

    def _write_events(self, conn: Any, work: _Batch, ids: _Ids) -> list[Outgoing]:
        out = [Outgoing(self.next_seq + i, topic, build(ids), retain)
               for i, (topic, retain, build) in enumerate(work.events)]
        queries.insert_rows(conn, outbox, [
            {"bridge": self.bridge, "seq": o.seq, "topic": o.topic, "payload": o.payload,
             "retain": o.retain} for o in out])
        self.next_seq += len(out)
        return out

    def record_error(self, topic: str, reason: str) -> list[Outgoing]:
        """Store and outbox an error of the bridge's own about ``topic`` (a refused subscription):
        a reject without payload, alone in its transaction; return its event, to publish."""
        work = _Batch()
        self._record_reject(work, topic, reason, b"", datetime.now(timezone.utc), SUBSCRIPTION_REFUSED)
        out = self._store_rejects(work)
        self.listener.on_rejects(work.classes)
        return out
