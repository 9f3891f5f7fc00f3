"""The stages between an MQTT message and its events: route, decode, drop resends, evaluate, commit.

One call of :meth:`Pipeline.process` handles a batch in a single transaction: readings, samples,
violations, rejects, the characteristics' engine state and the events (outbox) are committed
together, so after a crash the database never holds a sample without its events or state. Only
after the commit are the messages acknowledged and the events published (by the caller). A batch
that fails to commit is split around the message at fault (bridge.service.isolation).

The stages live in modules of their own: the router and its decoders (bridge.service.router,
bridge.service.decoders), resends (bridge.service.resends), the batch and its writer
(bridge.service.batch), rejects (bridge.service.rejects), commands (bridge.service.commands) and
the outbox (bridge.service.outbox); this class runs them in order.
"""

import time
from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy.engine import Connection, Engine

from bridge.assemble import Assembler, Sample
from bridge.config import CharacteristicConfig, Characteristics, SparkplugSource
from bridge.contract import REQUEST_FILTER, is_ack_topic, limits_topic, sample_topic, violation_topic
from bridge.fieldpaths import FieldPaths
from bridge.ingest import IngestError, iso_utc
from bridge.service import batch as writer
from bridge.service import commands, events, rejects, subscriptions
from bridge.service.batch import NO_IDS, Batch
from bridge.service.command_context import CommandContext
from bridge.service.decoders import Decoded, JsonDecoder, PathDecoder
from bridge.service.idempotency import describe_key
from bridge.service.isolation import Processed, isolate
from bridge.service.listener import (
    BAD_VALUE, COMMAND_ERROR, CONFLICT, INTERNAL_ERROR, RETAINED_COMMAND, SUBSCRIPTION_REFUSED,
    UNKNOWN_TOPIC, NoListener, PipelineListener,
)
from bridge.service.messages import Event, Inbound, Outgoing
from bridge.service.outbox import Outbox
from bridge.service.registry import Characteristic, Registry
from bridge.service.reject_limits import RejectLimiter
from bridge.service.resends import Resends
from bridge.service.router import Router
from bridge.service.sparkplug_decoder import Binding, SparkplugDecoder
from bridge.sparkplug.host import MetricKey, SparkplugHost
from bridge.sparkplug.topics import NAMESPACE, device_topic, node_topic
from bridge.spc import MONITORING, Evaluation
from bridge.store import queries

START_CHUNK = 500  # characteristics set up at a time


def _verdict(ev: Evaluation) -> dict[str, object]:
    """What the engine said of a sample, by the samples table's columns (queries.VERDICT_COLUMNS)."""
    return {"zone": ev.zone, "in_control": ev.in_control,
            "ucl": ev.limits.ucl if ev.limits is not None else None,
            "lcl": ev.limits.lcl if ev.limits is not None else None,
            "cusum_upper": ev.cusum_upper, "cusum_lower": ev.cusum_lower, "ewma": ev.ewma}


def _source_topic(config: CharacteristicConfig) -> str:
    """The topic a characteristic's readings come on: its own, or its Sparkplug metric's data topic."""
    source = config.sparkplug
    if source is None:
        assert config.topic is not None  # the configuration gives one or the other
        return config.topic
    if source.device_id is None:
        return node_topic(source.group_id, "NDATA", source.edge_node_id)
    return device_topic(source.group_id, "DDATA", source.edge_node_id, source.device_id)


def _binding(ch: Characteristic, source: SparkplugSource) -> Binding:
    """``ch`` bound to its Sparkplug metric (and the metric of its sample size)."""
    def key(metric: str) -> MetricKey:
        return MetricKey(source.group_id, source.edge_node_id, source.device_id, metric)
    return Binding(ch, key(source.metric), key(source.n_metric) if source.n_metric is not None else None)


class Pipeline:
    """Evaluates batches of inbound messages for a set of characteristics and stores them."""

    def __init__(self, engine: Engine, bridge: str, configs: Sequence[CharacteristicConfig],
                 max_payload: int = 65536, capability_interval: float = 10.0,
                 reorder_timeout_s: float = 2.0) -> None:
        self.engine = engine
        self.bridge = bridge
        self.max_payload = max_payload
        self.capability_interval = capability_interval
        self.reorder_timeout_s = reorder_timeout_s
        self._configs = list(configs)  # until start(): the pipeline keeps only what runs
        self.ingest_roots = configs.ingest_roots if isinstance(configs, Characteristics) else ()
        self.by_id: Registry = {}
        self.router = Router()
        self.sparkplug: SparkplugDecoder | None = None  # with characteristics fed by Sparkplug metrics
        self.outbox = Outbox(engine, bridge)
        self.resends = Resends(bridge)
        self.stored = 0  # readings committed by this process
        self.rejected = 0
        self.commands = commands.Desk()
        self.reject_limits = RejectLimiter()
        self.listener: PipelineListener = NoListener()  # told what each commit did (metrics)
        self._stale: dict[int, Characteristic] = {}  # touched by a failed batch: reload before use
        self.stale_filters: list[str] = []  # subscriptions a resumed session may hold: to unsubscribe
        self.subscription_changes: list[tuple[list[str], list[str]]] = []  # asked by commands: to make

    def readings_per_message(self, topic: str) -> int:
        """How many readings a message on ``topic`` carries at most: what it counts for in a batch."""
        decoder = self.router.route(topic)
        return decoder.readings_per_message(topic) if decoder is not None else 1

    @property
    def duplicates(self) -> int:
        """Resends dropped by this process: deliveries and readings seen before."""
        return self.resends.duplicates

    @property
    def next_seq(self) -> int:
        """The outbox seq of the next event."""
        return self.outbox.next_seq

    @property
    def topics(self) -> list[str]:
        """The filters to subscribe to: the ingest roots (the file's, else derived from the
        characteristics' topics) and the command requests."""
        return [*(self.ingest_roots or subscriptions.derive_roots(self.router.topics)), REQUEST_FILTER]

    @property
    def sparkplug_topics(self) -> list[str]:
        """The filters of the Sparkplug host's connection: every group a characteristic's metric is in."""
        if self.sparkplug is None:
            return []
        return [f"{NAMESPACE}/{group}/#" for group in sorted({k.group_id for k in self.sparkplug.by_key})]

    def start(self) -> list[Outgoing]:
        """Load the characteristics and their saved state (the tables exist: queries.create_tables)
        and find the stale subscriptions; return every unconfirmed event."""
        configs, self._configs = self._configs, []
        configs.reverse()
        shared: dict[str, list[tuple[Characteristic, FieldPaths]]] = {}
        bindings: list[Binding] = []
        with self.engine.begin() as conn:
            # 0.1 subscribed to each characteristic's topic; later versions record their filters
            earlier = queries.characteristic_topics(conn)
            saved = queries.load_states(conn)
            pending = self.outbox.load(conn)
            self.resends.load(conn)
            self.listener.on_violations(queries.open_violations(conn), 0)
            # A chunk at a time, each configuration dropped once its characteristic runs: the
            # run-time objects reuse the configurations' memory instead of adding to it.
            while configs:
                chunk = [configs.pop() for _ in range(min(START_CHUNK, len(configs)))]
                queries.sync_characteristics(conn, [
                    {"id": c.id, "name": c.name, "topic": _source_topic(c), "chart": c.chart,
                     "config": c.model_dump_json()} for c in chunk])
                work = Batch()
                for config in chunk:
                    state, waiting = saved.pop(config.id, (None, None))
                    spec = config.chart_spec()
                    ch = Characteristic(config.id, spec, Assembler(spec, state, waiting))
                    self.by_id[config.id] = ch
                    paths = config.field_paths()
                    if config.sparkplug is not None:
                        bindings.append(_binding(ch, config.sparkplug))
                    elif paths is None:
                        self.router.add_topic(_source_topic(config), JsonDecoder(ch, self.max_payload))
                    else:
                        shared.setdefault(_source_topic(config), []).append((ch, paths))
                    # limits are retained: republish them on every start, a broker may have lost them
                    self._limits(work, ch)
                del chunk
                pending += self.outbox.write(conn, work.events(NO_IDS))
            for topic, selections in shared.items():
                self.router.add_topic(topic, PathDecoder(selections, self.max_payload))
            if bindings:
                self.sparkplug = SparkplugDecoder(SparkplugHost(self.reorder_timeout_s), bindings)
                self.router.add_root(NAMESPACE, self.sparkplug)
                pending += self.outbox.write(conn, self.sparkplug.unborn())  # a retained "live" may be old
            earlier |= queries.replace_subscriptions(conn, self.bridge, self.topics)
            self.stale_filters = sorted(earlier - set(self.topics))
            return pending

    def pending_after(self, seq: int, limit: int) -> list[Outgoing]:
        """Committed events after ``seq`` (to catch up when they were not kept in memory)."""
        return self.outbox.pending_after(seq, limit)

    def forget_confirmed(self, up_to: int) -> None:
        """Delete the events the broker has acknowledged."""
        self.outbox.forget_confirmed(up_to)

    # ------------------------------------------------------------------ batch
    def process(self, messages: Sequence[Inbound]) -> Processed[Inbound, Outgoing]:
        """Evaluate and commit a batch, rejecting alone any message that cannot be processed; its
        events (to publish after the commit), the messages to acknowledge and those to retry."""
        done = isolate(messages, self._process, self._quarantine,
                       lambda error: queries.unavailable(self.engine, error))
        if done.retry:
            self.listener.on_unavailable(len(done.retry))
        return done

    def _process(self, messages: Sequence[Inbound]) -> list[Outgoing]:
        """Evaluate and commit ``messages`` in one transaction; on failure nothing of it remains."""
        touched: dict[int, Characteristic] = {}
        saved = self.resends.delivered, self.resends.duplicates, self.outbox.next_seq
        started = time.perf_counter()
        stateful = list(self.router.stateful())
        for decoder in stateful:
            decoder.begin()
        try:
            with self.engine.begin() as conn:
                self._restore(conn)
                work = Batch()
                rejects.summaries(self.reject_limits, work, datetime.now(timezone.utc))
                decoded: list[tuple[Inbound, Decoded]] = []
                for message in self.resends.new_deliveries(conn, work, messages):
                    decoded += self._decode(work, message)
                unseen, conflicts = self.resends.unseen(conn, decoded)
                for message, d in conflicts:
                    self._reject(work, message, f"{describe_key(d.key or '')} already stored with another value",
                                 CONFLICT)
                for message, d in unseen:
                    touched[d.characteristic.id] = d.characteristic
                    self._accept(work, message, d)
                context = CommandContext(self.by_id)
                out = self._commit(conn, work, touched, context)
        except Exception:
            self.resends.delivered, self.resends.duplicates, self.outbox.next_seq = saved
            self._stale.update(touched)
            for decoder in stateful:
                decoder.rollback()
            raise
        for decoder in stateful:
            decoder.commit()
        if context.subscribe or context.unsubscribe:
            self.subscription_changes.append((context.subscribe, context.unsubscribe))
        self.stored += len(work.readings)
        self.rejected += len(work.rejects) + sum(work.suppressed.values())
        self.reject_limits.commit(work.now, work.full, work.suppressed)
        self._report(messages, work, time.perf_counter() - started, self.resends.duplicates - saved[1])
        return out

    def _report(self, messages: Sequence[Inbound], work: Batch, seconds: float, duplicates: int) -> None:
        """Tell the listener what a committed transaction did."""
        listener = self.listener
        listener.on_batch(messages, seconds)
        listener.on_readings(len(messages) - work.commands, len(work.readings), duplicates, work.commands)
        if work.classes:
            listener.on_rejects(work.classes)
        if work.violations or work.acknowledged:
            listener.on_violations(len(work.violations), work.acknowledged)

    def _quarantine(self, message: Inbound, error: Exception) -> list[Outgoing]:
        """Record a message that fails however it is tried as a reject, alone in its transaction."""
        reason = f"internal error: {type(error).__name__}: {error}"[:rejects.REASON_CHARS]
        started = time.perf_counter()
        work = Batch()
        self._reject(work, message, reason, INTERNAL_ERROR)
        out = self._store_rejects(work, [message])
        self._report([message], work, time.perf_counter() - started, 0)
        return out

    def _store_rejects(self, work: Batch, deliveries: Sequence[Inbound] = ()) -> list[Outgoing]:
        """Commit the rejects and events of ``work`` (and the deliveries of ``deliveries``) in a
        transaction of their own; their events."""
        saved = self.resends.delivered, self.outbox.next_seq
        try:
            with self.engine.begin() as conn:
                self.resends.new_deliveries(conn, work, deliveries)
                writer.write_records(conn, work, ())
                out = self.outbox.write(conn, work.events(NO_IDS))
        except Exception:
            self.resends.delivered, self.outbox.next_seq = saved
            raise
        self.rejected += len(work.rejects) + sum(work.suppressed.values())
        self.reject_limits.commit(work.now, work.full, work.suppressed)
        return out

    def _restore(self, conn: Connection) -> None:
        """Put the characteristics a failed batch touched back to their stored state."""
        if not self._stale:
            return
        saved = queries.load_states(conn, list(self._stale))
        for cid, ch in self._stale.items():
            state, pending = saved.get(cid, (None, None))
            ch.assembler = Assembler(ch.spec, state, pending)
            ch.published_limits = -1 if state is None else ch.assembler.evaluator.limits_version
        self._stale.clear()

    def _decode(self, work: Batch, message: Inbound) -> list[tuple[Inbound, Decoded]]:
        """The readings of ``message``; a command is queued, what cannot be used is rejected."""
        request = commands.parse_request_topic(message.topic)
        if request is not None:
            work.commands += 1
            if message.retained and message.payload:  # replayed by the broker: reject it and clear it
                self._reject(work, message, commands.RETAINED_IGNORED, RETAINED_COMMAND)
                work.add_events(commands.clear_retained(message.topic))
            else:
                work.requests.append((message, *request))
            return []
        decoder = self.router.route(message.topic)
        if decoder is None:
            self._reject(work, message, f"no characteristic for topic {message.topic}", UNKNOWN_TOPIC)
            return []
        decoding = decoder.decode(message)
        for refusal in decoding.refusals:
            self._reject(work, message, refusal.reason, refusal.kind)
        if decoding.events:
            work.add_events(decoding.events)
        return [(message, d) for d in decoding.readings]

    def _reject(self, work: Batch, message: Inbound, reason: str, kind: str) -> None:
        rejects.record(self.reject_limits, work, message.topic, reason, message.payload, message.received_at, kind)

    def _accept(self, work: Batch, message: Inbound, d: Decoded) -> None:
        ch, reading = d.characteristic, d.reading
        try:
            accepted = ch.assembler.accept(reading)
        except IngestError as error:
            self._reject(work, message, str(error), BAD_VALUE)
            return
        work.readings.append({
            "characteristic_id": ch.id, "sample_idx": accepted.sample_idx, "seq": reading.seq,
            "reading_key": d.key, "digest": d.digest,
            "ts": reading.ts, "received_at": message.received_at,
            "measurements": writer.json_text(reading.values) if reading.values is not None else None,
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

    def _sample(self, work: Batch, ch: Characteristic, sample: Sample, seq: str | int | None) -> None:
        cid = ch.id
        for ev in sample.evaluations:
            key = (cid, ev.index)
            verdict = _verdict(ev)
            if ev.index == sample.idx:
                # the event tells the verdict as the sample arrived, whatever the batch holds after it
                work.sample(sample_topic(cid), key, {
                    "characteristic_id": cid, "idx": ev.index, "ts": sample.ts, "value": ev.value,
                    "n": ev.n, "spread": ev.spread, **verdict}, ch.spec, seq)
            elif key in work.sample_at:  # a baseline sample of this same batch, judged late
                work.samples[work.sample_at[key]].update(verdict)
            else:
                work.judged.append({"cid": cid, "i": ev.index, **verdict})
            for violation in ev.violations:
                work.violation(violation_topic(cid), cid, ev.index, violation)

    def _limits(self, work: Batch, ch: Characteristic) -> None:
        evaluator = ch.assembler.evaluator
        ch.published_limits, ch.limits_at = evaluator.limits_version, work.now
        work.event(limits_topic(ch.id), events.limits_event(ch.id, evaluator), retain=True)

    def _commit(self, conn: Connection, work: Batch, touched: dict[int, Characteristic],
                context: CommandContext) -> list[Outgoing]:
        ids = writer.write_measurements(conn, work)
        self._requests(conn, work, context)
        writer.write_records(conn, work, touched.values())
        return self.outbox.write(conn, work.events(ids))

    def _requests(self, conn: Connection, work: Batch, context: CommandContext) -> None:
        """Carry out the batch's commands, after its data is written (acknowledgements need it);
        those over their user's budget or the batch's share are answered busy (commands.Desk)."""
        if not work.requests:
            return
        outcomes = self.commands.run(conn, [
            commands.Request(user, command, message.payload, iso_utc(message.received_at))
            for message, user, command in work.requests], context)
        for (message, _, _), outcome in zip(work.requests, outcomes):
            work.add_events(outcome.events)
            work.acknowledged += sum(is_ack_topic(e.topic) for e in outcome.events)
            if outcome.error is not None:
                self._reject(work, message, outcome.error, COMMAND_ERROR)

    def record_events(self, more: Sequence[Event]) -> list[Outgoing]:
        """Store events of the bridge's own (status changes) in the outbox, alone in a transaction;
        return them, to publish."""
        work = Batch()
        work.add_events(more)
        return self._store_rejects(work)

    def record_error(self, topic: str, reason: str) -> list[Outgoing]:
        """Store and outbox an error of the bridge's own about ``topic`` (a refused subscription):
        a reject without payload, alone in its transaction; return its event, to publish."""
        work = Batch()
        rejects.record(self.reject_limits, work, topic, reason, b"", datetime.now(timezone.utc), SUBSCRIPTION_REFUSED)
        out = self._store_rejects(work)
        self.listener.on_rejects(work.classes)
        return out
