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

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from paho.mqtt.client import topic_matches_sub
from sqlalchemy.engine import Connection, Engine

from bridge.assemble import Assembler, Sample
from bridge.config import CharacteristicConfig, Characteristics, SparkplugSource
from bridge.contract import (
    MISSED_SAMPLE_RULE_ID, MISSED_SAMPLE_RULE_NAME, MISSED_SAMPLE_SEVERITY, REQUEST_FILTER, is_ack_topic,
    limits_topic, sample_topic, violation_topic,
)
from bridge.fieldpaths import FieldPaths
from bridge.ingest import IngestError, iso_utc
from bridge.service import batch as writer
from bridge.service import catalog, commands, events, rejects, subscriptions
from bridge.service.batch import NO_IDS, Batch, NewLimitSet
from bridge.service.command_context import Cause, CommandContext
from bridge.service.decoders import Decoded, JsonDecoder, PathDecoder
from bridge.service.idempotency import describe_key
from bridge.service.isolation import Processed, isolate
from bridge.service.listener import (
    BAD_VALUE, COMMAND_ERROR, CONFLICT, INTERNAL_ERROR, RETAINED_COMMAND, SUBSCRIPTION_REFUSED,
    UNKNOWN_TOPIC, NoListener, PipelineListener,
)
from bridge.service.messages import Event, Inbound, Outgoing
from bridge.service.missed import MissedSamples
from bridge.service.outbox import Outbox
from bridge.service.partitions import Partitioning
from bridge.service.registry import Characteristic, Registry
from bridge.service.reject_limits import RejectLimiter
from bridge.service.resends import Resends
from bridge.service.router import Router
from bridge.service.sparkplug_decoder import Binding, SparkplugDecoder
from bridge.service.status import MISSED, StatusBoard
from bridge.sparkplug.host import MetricKey, SparkplugHost
from bridge.sparkplug.topics import NAMESPACE, device_topic, node_topic
from bridge.spc import MONITORING, Evaluation, Evaluator
from bridge.store import limit_sets, queries
from bridge.store.limit_sets import LimitSetRef

log = logging.getLogger(__name__)
START_CHUNK = 500  # characteristics set up at a time
ENGINE = "bridge"  # the audit trail's user for what the engine does by itself (a baseline completes)


def _verdict(ev: Evaluation, limit_set: int) -> dict[str, object]:
    """What the engine said of a sample, by the samples table's columns (queries.VERDICT_COLUMNS)."""
    return {"zone": ev.zone, "in_control": ev.in_control,
            "ucl": ev.limits.ucl if ev.limits is not None else None,
            "lcl": ev.limits.lcl if ev.limits is not None else None,
            "cusum_upper": ev.cusum_upper, "cusum_lower": ev.cusum_lower, "ewma": ev.ewma,
            "limit_set": limit_set}


def _engine_cause(evaluator: Evaluator) -> Cause:
    """Who made a limit set the engine set by itself, and why."""
    if evaluator.phase == MONITORING:
        stop = evaluator.baseline_start + len(evaluator.baseline) - 1
        return Cause("baseline", ENGINE, f"baseline of samples {evaluator.baseline_start}..{stop} complete")
    return Cause("baseline", ENGINE, evaluator.baseline_error or "baseline started")


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
                 reorder_timeout_s: float = 2.0, source: str = "configuration",
                 role_of: Callable[[str], str | None] | None = None,
                 partition: tuple[int, int] | None = None, ids_kept: bool = True) -> None:
        self.engine = engine
        self.partition = partition  # (index, count) of the partition this pipeline serves; None: all
        self.partitioning: Partitioning | None = None  # made at start, from every characteristic
        self.bridge = bridge
        self.max_payload = max_payload
        self.capability_interval = capability_interval
        self.reorder_timeout_s = reorder_timeout_s
        self._configs = configs if isinstance(configs, Characteristics) else Characteristics(configs)
        self.source = source  # the file the configs come from (the audit trail's user: file:<source>)
        self.role_of = role_of  # a user's role (bridge.service.roles); None: the broker decides
        self.reason_codes: tuple[str, ...] = ()
        self.ingest_roots = self._configs.ingest_roots
        self.by_id: Registry = {}
        self.router = Router()
        self.sparkplug: SparkplugDecoder | None = None  # with characteristics fed by Sparkplug metrics
        self.outbox = Outbox(engine, bridge)
        self.resends = Resends(bridge, ids_kept)  # ids_kept: the broker redelivers under the first packet id
        self.stored = 0  # readings committed by this process
        self.rejected = 0
        self.commands = commands.Desk()
        self.reject_limits = RejectLimiter()
        self.listener: PipelineListener = NoListener()  # told what each commit did (metrics)
        self._stale: dict[int, Characteristic] = {}  # touched by a failed batch: reload before use
        self._shared: dict[str, list[tuple[Characteristic, FieldPaths]]] = {}  # topics of vendor JSON
        self.status = StatusBoard()
        self.missed = MissedSamples()
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
        if self.partitioning is not None:  # a root would bring the other partitions' readings too
            return [*sorted(self.router.topics), REQUEST_FILTER]
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
        bindings: list[Binding] = []
        with self.engine.begin() as conn:
            # 0.1 subscribed to each characteristic's topic; later versions record their filters
            earlier = queries.characteristic_topics(conn)
            imported = catalog.apply_file(conn, self._configs, self.source, iso_utc(datetime.now(timezone.utc)),
                                          _source_topic)
            self._configs = Characteristics()
            log.info("%s", catalog.summary(imported, self.source))
            configs = imported.active
            if self.partition is not None:
                self.partitioning = Partitioning(*self.partition, configs)
                configs = [c for c in configs if self.partitioning.serves(c)]
            changed = queries.take_changed_by_file(conn, (c.id for c in configs))  # by this file or an earlier
            configs.reverse()
            self.reason_codes = catalog.reason_codes(conn)
            saved = queries.load_states(conn)
            current = limit_sets.current(conn)
            import_cause = Cause("import", f"file:{self.source}", f"imported from {self.source}")
            pending = self.outbox.load(conn)
            self.resends.load(conn)
            self.listener.on_violations(queries.open_violations(conn), 0)
            open_counts = queries.open_violations_by_characteristic(conn)
            # A chunk at a time, each configuration dropped once its characteristic runs: the
            # run-time objects reuse the configurations' memory instead of adding to it.
            while configs:
                chunk = [configs.pop() for _ in range(min(START_CHUNK, len(configs)))]
                work = Batch()
                restated: list[Characteristic] = []
                for config in chunk:
                    state, waiting = saved.pop(config.id, (None, None))
                    if changed.get(config.id):  # reshaped: the saved state no longer applies
                        state, waiting = None, None
                    spec = config.chart_spec()
                    ch = Characteristic(config.id, spec, Assembler(spec, state, waiting),
                                        limit_set=current.get(config.id), name=config.name)
                    self.by_id[config.id] = ch
                    cause = None
                    if ch.limit_set is None or config.id in changed:
                        cause = import_cause
                        if state is not None:
                            self._reestablish(ch)
                            restated.append(ch)
                    ch.published_limits = -1 if cause is not None else ch.assembler.evaluator.limits_version
                    if config.sparkplug is not None:
                        bindings.append(_binding(ch, config.sparkplug))
                    else:
                        self._route(ch, config, False)
                    self.missed.watch(ch, config.expected_interval, config.interval_tolerance or 0.0)
                    # limits are retained: republish them on every start, a broker may have lost them
                    self._limits(work, ch, cause)
                del chunk
                writer.write_records(conn, work, restated)
                pending += self.outbox.write(conn, work.events(NO_IDS._replace(
                    limit_sets=writer.write_limit_sets(conn, work, {}))))
            for topic, selections in self._shared.items():
                self.router.add_topic(topic, PathDecoder(selections, self.max_payload))
            self.status.open_violations(open_counts, self.by_id.values())
            if bindings:
                self.sparkplug = SparkplugDecoder(SparkplugHost(self.reorder_timeout_s), bindings, self.status)
                self.router.add_root(NAMESPACE, self.sparkplug)
                pending += self.outbox.write(conn, self.sparkplug.unborn())  # a retained "live" may be old
            earlier |= queries.replace_subscriptions(conn, self.bridge, self.topics)
            self.stale_filters = sorted(earlier - set(self.topics))
            return pending

    # ------------------------------------------- characteristics created, changed, retired by command
    def _route(self, ch: Characteristic, config: CharacteristicConfig, now: bool = True) -> None:
        """Send the readings on ``config``'s topic to ``ch``; a topic of vendor JSON, shared, gets its
        decoder ``now`` or, at start, once every characteristic on it is known."""
        topic = ch.topic = _source_topic(config)
        paths = config.field_paths()
        if paths is None:
            self.router.add_topic(topic, JsonDecoder(ch, self.max_payload))
            return
        sharing = [pair for pair in self._shared.get(topic, []) if pair[0].id != ch.id]
        self._shared[topic] = sharing + [(ch, paths)]
        if now:
            self.router.add_topic(topic, PathDecoder(self._shared[topic], self.max_payload))

    def _unroute(self, ch: Characteristic) -> None:
        """Send nothing more to ``ch``."""
        topic = ch.topic
        if topic is None:
            return
        sharing = [pair for pair in self._shared.pop(topic, []) if pair[0].id != ch.id]
        if sharing:
            self._shared[topic] = sharing
            self.router.add_topic(topic, PathDecoder(sharing, self.max_payload))
        else:
            self.router.remove_topic(topic)

    def route_problem(self, config: CharacteristicConfig, replacing: int | None) -> str | None:
        """Why ``config`` cannot take its topic beside the running characteristics (``replacing``: the
        id it replaces), or None."""
        if config.sparkplug is not None:
            return "sparkplug: a characteristic fed by a Sparkplug metric is created and changed through the file"
        topic = _source_topic(config)
        others = [ch.id for ch, _ in self._shared.get(topic, []) if ch.id != replacing]
        decoder = self.router.route(topic)
        if isinstance(decoder, JsonDecoder) and decoder.characteristic.id != replacing:
            others.append(decoder.characteristic.id)
        if others and (config.value_path is None or isinstance(decoder, JsonDecoder)):
            return (f"topic: {topic!r} is already the topic of characteristic {others[0]}; characteristics share "
                    "a topic only when each selects its reading with value_path")
        if self.ingest_roots and sum(topic_matches_sub(root, topic) for root in self.ingest_roots) != 1:
            return f"topic: {topic!r} is not under exactly one of the ingest roots {list(self.ingest_roots)}"
        return None

    def filters_after(self, added: str | None, leaving: Characteristic | None) -> list[str]:
        """The filters to subscribe to once topic ``added`` routes and ``leaving`` is no longer fed."""
        if self.ingest_roots and self.partitioning is None:
            return self.topics
        topics = set(self.router.topics)
        if leaving is not None and leaving.topic is not None and not any(
                ch.id != leaving.id for ch, _ in self._shared.get(leaving.topic, [])):
            topics.discard(leaving.topic)
        if added is not None:
            topics.add(added)
        filters = sorted(topics) if self.partitioning is not None else subscriptions.derive_roots(topics)
        return [*filters, REQUEST_FILTER]

    def source_topic(self, config: CharacteristicConfig) -> str:
        """The topic ``config``'s readings come on."""
        return _source_topic(config)

    def install(self, ch: Characteristic, config: CharacteristicConfig) -> None:
        """Run ``ch`` from now on, in place of the one of its id."""
        old = self.by_id.get(ch.id)
        if old is not None:
            self._unroute(old)
        self.by_id[ch.id] = ch
        self._route(ch, config)
        self.missed.watch(ch, config.expected_interval, config.interval_tolerance or 0.0)
        self.status.limits_changed(ch)

    def retire(self, characteristic_id: int) -> None:
        """Stop running a characteristic."""
        old = self.by_id.pop(characteristic_id, None)
        if old is not None:
            self._unroute(old)
            self.missed.watch(old, None, 0.0)
            self.status.forget(characteristic_id)

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
        self.commands.begin()
        context: CommandContext | None = None
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
                context = CommandContext(self.by_id, touched, self.reason_codes, self.role_of,
                                         lambda ch, cause: self._command_limits(conn, work, ch, cause), self)
                out = self._commit(conn, work, touched, context)
        except Exception:
            self.resends.delivered, self.resends.duplicates, self.outbox.next_seq = saved
            if context is not None:
                context.discard()
            self._stale.update(touched)
            for decoder in stateful:
                decoder.rollback()
            self.commands.rollback()
            raise
        for decoder in stateful:
            decoder.commit()
        self._follow_status(work, touched)
        if context.subscribe or context.unsubscribe:
            self.subscription_changes.append((context.subscribe, context.unsubscribe))
        self.stored += len(work.readings)
        self.rejected += len(work.rejects) + sum(work.suppressed.values())
        self.reject_limits.commit(work.now, work.full, work.suppressed)
        self._report(messages, work, time.perf_counter() - started, self.resends.duplicates - saved[1])
        return out

    def _follow_status(self, work: Batch, fed: dict[int, Characteristic]) -> None:
        """Tell the status board what a committed batch did: which characteristics it fed (no longer
        overdue), their samples, new and acknowledged violations."""
        board, by_id = self.status, self.by_id
        for cid, ch in fed.items():
            if board.is_stale(cid, MISSED):
                board.set_stale(ch, MISSED, None)
        for ch, in_control, received_at in work.judged_samples:
            board.sample(ch, in_control, received_at)
        for cid, _, _ in work.violations:
            if cid in by_id:
                board.violations(by_id[cid], 1)
        for cid in work.ack_characteristics:
            if cid in by_id:
                board.violations(by_id[cid], -1)

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
        stored = queries.stored_characteristics(conn, list(self._stale))
        current = limit_sets.current(conn, list(self._stale))
        for cid, ch in self._stale.items():
            state, pending = saved.get(cid, (None, None))
            if cid in stored:
                ch.spec = CharacteristicConfig.model_validate_json(stored[cid].config).chart_spec()
            ch.assembler = Assembler(ch.spec, state, pending)
            ch.limit_set = current.get(cid)
            ch.published_limits = ch.assembler.evaluator.limits_version
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
        self.missed.reading(ch.id)
        for sample in accepted.completed:
            self._sample(work, ch, sample, reading.sent_seq() if sample.whole else None)
            own = next(ev for ev in reversed(sample.evaluations) if ev.index == sample.idx)
            work.judged_samples.append((ch, own.in_control, iso_utc(message.received_at)))
        evaluator = ch.assembler.evaluator
        if evaluator.limits_version != ch.published_limits or (
                accepted.completed and evaluator.phase == MONITORING
                and (ch.spec.usl is not None or ch.spec.lsl is not None)
                and work.now - ch.limits_at >= self.capability_interval):
            self._limits(work, ch)  # new limits, or a capability that moved with the samples

    def _sample(self, work: Batch, ch: Characteristic, sample: Sample, seq: str | int | None) -> None:
        cid = ch.id
        current = ch.limit_set
        # judged by the limit set in force, or by the one the engine has just set (published after)
        version = (current.version if current is not None else 0) + (
            ch.assembler.evaluator.limits_version != ch.published_limits)
        if current is not None and current.effective_from is None and cid not in work.first_samples \
                and ch.assembler.evaluator.limits_version == ch.published_limits \
                and ch.assembler.evaluator.phase == MONITORING:
            work.first_samples[cid] = (ch, (cid, sample.evaluations[0].index))
        for ev in sample.evaluations:
            key = (cid, ev.index)
            verdict = _verdict(ev, version)
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

    def _reestablish(self, ch: Characteristic) -> None:
        """Set ``ch``'s limits again after its configuration changed; keep the old ones if the new
        configuration cannot give limits from the saved baseline (the log says why)."""
        try:
            ch.assembler.evaluator.reestablish()
        except ValueError as error:
            log.warning("characteristic %d keeps its limits: %s", ch.id, error)

    def _limits(self, work: Batch, ch: Characteristic, cause: Cause | None = None) -> None:
        """Put ``ch``'s limits event in the batch, with a new limit set if its limits changed."""
        row, first = self._new_limit_set(work, ch, cause)
        evaluator = ch.assembler.evaluator
        if row is None:
            work.event(limits_topic(ch.id), events.limits_event(ch.id, evaluator, ch.limit_set, ch.name), retain=True)
            return
        ch.limit_set = LimitSetRef(0, row["version"], None)  # in force; its id once the batch writes it
        event = events.limits_model(ch.id, evaluator, name=ch.name)
        work.limit_set(limits_topic(ch.id), NewLimitSet(ch, row, first), event)

    def _command_limits(self, conn: Connection, work: Batch, ch: Characteristic, cause: Cause) -> str:
        """Store the limit set a command made for ``ch``; its limits event's text (the command publishes it)."""
        row, _ = self._new_limit_set(work, ch, cause)
        if row is not None:
            [ch.limit_set] = limit_sets.insert_many(conn, [row])
        return events.limits_event(ch.id, ch.assembler.evaluator, ch.limit_set, ch.name)

    def _new_limit_set(self, work: Batch, ch: Characteristic,
                       cause: Cause | None) -> tuple[dict[str, Any] | None, tuple[int, int] | None]:
        """Note ``ch``'s limits as published. If they changed since the last time, the row of its next limit
        set (made by ``cause``, by default the engine's own baseline) and, when a baseline completed, its
        first sample."""
        evaluator = ch.assembler.evaluator
        new = evaluator.limits_version != ch.published_limits or ch.limit_set is None
        ch.published_limits, ch.limits_at = evaluator.limits_version, work.now
        if not new:
            return None, None
        self.status.limits_changed(ch)
        first = None
        if cause is None:
            cause = _engine_cause(evaluator)
            if evaluator.phase == MONITORING:  # its baseline's samples were judged first
                first = (ch.id, evaluator.baseline_start)
        return self._limit_set_row(ch, cause), first

    def _limit_set_row(self, ch: Characteristic, cause: Cause) -> dict[str, Any]:
        """``ch``'s current limits as the row of its next limit set."""
        evaluator = ch.assembler.evaluator
        limits = evaluator.limits()
        primary = limits[0] if limits is not None else None
        return {
            "characteristic_id": ch.id, "version": (ch.limit_set.version if ch.limit_set is not None else 0) + 1,
            "phase": evaluator.phase, "center": primary.center if primary else None,
            "ucl": primary.ucl if primary else None, "lcl": primary.lcl if primary else None,
            "sigma": evaluator.params.sigma if evaluator.params is not None else None,
            "cause": cause.what, "user": cause.user, "reason": cause.reason,
            "excluded_sample_ids": list(cause.excluded), "effective_from": None,
            "created_at": iso_utc(datetime.now(timezone.utc)),
        }

    def _commit(self, conn: Connection, work: Batch, touched: dict[int, Characteristic],
                context: CommandContext) -> list[Outgoing]:
        ids = writer.write_measurements(conn, work)
        self._first_samples(conn, work, ids.samples)
        self._requests(conn, work, context)
        writer.write_records(conn, work, touched.values())
        return self.outbox.write(conn, work.events(ids))

    def _first_samples(self, conn: Connection, work: Batch, sample_ids: dict[tuple[int, int], int]) -> None:
        """Record the first sample judged by limit sets made before this batch (by a command, or at
        start), and republish their limits, which now say it."""
        for ch, key in work.first_samples.values():
            ref = ch.limit_set
            sample_id = sample_ids.get(key)
            if ref is None or not ref.id or ref.effective_from is not None or sample_id is None:
                continue
            ch.limit_set = limit_sets.set_effective_from(conn, ref, sample_id)
            work.event(limits_topic(ch.id), events.limits_event(ch.id, ch.assembler.evaluator, ch.limit_set, ch.name),
                       retain=True)

    def _requests(self, conn: Connection, work: Batch, context: CommandContext) -> None:
        """Carry out the batch's commands, after its data is written (acknowledgements need it);
        those over their user's budget or the batch's share are answered busy (commands.Desk)."""
        requests = work.requests
        refusals: list[tuple[Inbound, commands.Outcome]] = []
        if self.partitioning is not None:
            requests = []
            for message, user, command in work.requests:
                owner = self.partitioning.owner(conn, command, message.payload)
                if owner.partition != self.partitioning.index:
                    continue  # another partition answers it
                if owner.problem is not None:
                    refusals.append((message, commands.refuse(user, command, message.payload, owner.problem)))
                else:
                    requests.append((message, user, command))
        if not requests and not refusals:
            return
        outcomes = self.commands.run(conn, [
            commands.Request(user, command, message.payload, iso_utc(message.received_at))
            for message, user, command in requests], context)
        for message, outcome in [*zip((r[0] for r in requests), outcomes), *refusals]:
            work.add_events(outcome.events)
            acks = [int(e.topic.split("/")[1]) for e in outcome.events if is_ack_topic(e.topic)]
            work.acknowledged += len(acks)
            work.ack_characteristics += acks
            if outcome.error is not None:
                self._reject(work, message, outcome.error, COMMAND_ERROR)

    def tick(self) -> list[Outgoing]:
        """The missed samples and the status events due now, stored in a transaction of their own with
        their events; return those events, to publish."""
        overdue = self.missed.overdue()
        stamp = iso_utc(datetime.now(timezone.utc))
        for ch, seconds in overdue:
            self.status.set_stale(ch, MISSED, f"missed sample: no reading for {seconds:g} s")
            self.status.violations(ch, 1)
        statuses = self.status.due(stamp)
        if not overdue and not statuses:
            return []
        saved = self.outbox.next_seq
        try:
            with self.engine.begin() as conn:
                violations = [{"characteristic_id": ch.id, "sample_id": queries.last_sample_id(conn, ch.id) or 0,
                               "rule_id": MISSED_SAMPLE_RULE_ID, "rule_name": MISSED_SAMPLE_RULE_NAME,
                               "severity": MISSED_SAMPLE_SEVERITY, "chart": ch.spec.type.primary,
                               "acknowledged": False} for ch, _ in overdue]
                ids = queries.insert_violations(conn, violations)
                out = self.outbox.write(conn, [
                    *(Event(violation_topic(row["characteristic_id"]), events.violation_event(vid, row), False)
                      for vid, row in zip(ids, violations)), *statuses])
        except Exception:
            self.outbox.next_seq = saved
            for ch, _ in overdue:  # reported at the next tick instead
                self.status.set_stale(ch, MISSED, None)
                self.status.violations(ch, -1)
                self.missed.report_again(ch.id)
            self.status.republish(statuses)
            raise
        if violations:
            self.listener.on_violations(len(violations), 0)
        return out

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
