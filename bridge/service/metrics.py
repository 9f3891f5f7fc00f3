"""The bridge's Prometheus metrics and its health, for ``--metrics-port`` (README, "Metrics and health").

The pipeline reports each commit through the PipelineListener calls (bridge.service.listener); what the
other parts know already (the publisher's confirmations and outbox, the link's connection, each
characteristic's phase) is read when Prometheus scrapes, so the drain pays nothing for it. Every metric is
in a registry of this bridge's own, not prometheus_client's global one, so one process can hold several.
"""

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.service.listener import REJECT_CLASSES, Received
from bridge.service.pipeline import Pipeline
from bridge.service.publisher import Publisher
from bridge.spc import BASELINE, MONITORING

PREFIX = "spc_bridge"
DRAIN_STALL_S = 30.0  # the outbox is not draining when it holds events and none was confirmed this long
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Live(Collector):
    """What is read at scrape time from the parts that already keep it."""

    def __init__(self, pipeline: Pipeline, publisher: Publisher, connected: threading.Event) -> None:
        self.pipeline = pipeline
        self.publisher = publisher
        self.connected = connected

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(f"{PREFIX}_events_published", "events the broker has confirmed (PUBACK)",
                                  value=self.publisher.published)
        yield GaugeMetricFamily(f"{PREFIX}_outbox_depth", "committed events not yet confirmed by the broker",
                                value=self.publisher.depth)
        yield GaugeMetricFamily(f"{PREFIX}_broker_connected", "1 while connected to the MQTT broker, else 0",
                                value=int(self.connected.is_set()))
        phases = GaugeMetricFamily(f"{PREFIX}_characteristics", "configured characteristics by phase",
                                   labels=["phase"])
        counts = dict.fromkeys((BASELINE, MONITORING), 0)
        for ch in list(self.pipeline.by_id.values()):
            phase = ch.assembler.evaluator.phase
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            phases.add_metric([phase], count)
        yield phases


class BridgeMetrics:
    """The bridge's metrics (a PipelineListener) and its health check."""

    def __init__(self, pipeline: Pipeline, publisher: Publisher, connected: threading.Event,
                 ready: threading.Event) -> None:
        self.pipeline = pipeline
        self.publisher = publisher
        self.connected = connected
        self.ready = ready
        self.waiting = 0  # messages the database could not take, until a batch commits again
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.received = Counter(f"{PREFIX}_readings_received", "messages received on the ingest topics",
                                registry=registry)
        self.stored = Counter(f"{PREFIX}_readings_stored", "readings stored", registry=registry)
        self.duplicates = Counter(f"{PREFIX}_readings_duplicate",
                                  "readings received again (a resend or redelivery) and dropped", registry=registry)
        self.commands = Counter(f"{PREFIX}_commands_received", "command requests received", registry=registry)
        self.rejects = Counter(f"{PREFIX}_rejects", "messages rejected, by reason class", ["reason"],
                               registry=registry)
        for kind in REJECT_CLASSES:
            self.rejects.labels(kind)  # every class from the start, so that rate() sees the first one
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "messages per committed batch",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.commit_seconds = Histogram(f"{PREFIX}_commit_seconds",
                                        "time of one batch's transaction: evaluate, write, commit",
                                        buckets=SECONDS_BUCKETS, registry=registry)
        self.latency = Histogram(f"{PREFIX}_receipt_to_commit_seconds",
                                 "from a message's receipt to the commit of its batch",
                                 buckets=SECONDS_BUCKETS, registry=registry)
        self.open_violations = Gauge(f"{PREFIX}_open_violations", "violations not acknowledged",
                                     registry=registry)
        registry.register(_Live(pipeline, publisher, connected))

    # --- PipelineListener
    def on_batch(self, messages: Sequence[Received], seconds: float) -> None:
        """Batch size, commit time and each message's receipt-to-commit latency."""
        self.waiting = 0
        self.batch_size.observe(len(messages))
        self.commit_seconds.observe(seconds)
        now = datetime.now(timezone.utc)
        observe = self.latency.observe
        for message in messages:
            observe((now - message.received_at).total_seconds())

    def on_readings(self, received: int, stored: int, duplicates: int, commands: int) -> None:
        """Count readings and commands."""
        self.received.inc(received)
        self.stored.inc(stored)
        self.duplicates.inc(duplicates)
        self.commands.inc(commands)

    def on_rejects(self, classes: Mapping[str, int]) -> None:
        """Count rejects by class."""
        for kind, count in classes.items():
            self.rejects.labels(kind).inc(count)

    def on_violations(self, opened: int, acknowledged: int) -> None:
        """Keep the number of open violations."""
        self.open_violations.inc(opened - acknowledged)

    def on_unavailable(self, waiting: int) -> None:
        """Remember that messages wait for the database."""
        self.waiting = waiting

    # --- health
    def problems(self) -> list[str]:
        """Why the bridge is unhealthy (empty: healthy): broker, database, outbox."""
        reasons = []
        if not self.ready.is_set():
            reasons.append("starting: the database is not open yet")
        if not self.connected.is_set():
            reasons.append("broker: not connected")
        try:
            with self.pipeline.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as error:  # the class only: a driver's message may name hosts and users
            reasons.append(f"database: unreachable ({type(error).__name__})")
        if self.waiting:
            reasons.append(f"database: {self.waiting} messages wait to be committed (it refuses writes or is locked)")
        depth, stalled = self.publisher.depth, time.monotonic() - self.publisher.confirmed_at
        if depth and stalled > DRAIN_STALL_S:
            reasons.append(f"outbox: not draining, {depth} events wait and none was confirmed for {stalled:.0f} s")
        return reasons


class InstanceMetrics(Collector):
    """The metrics and health of the process across take-overs (bridge.service.failover): the active
    bridge's own while it serves, and ``spc_bridge_active``; a standby is healthy and counts nothing."""

    def __init__(self) -> None:
        self.serving: BridgeMetrics | None = None  # the bridge this instance serves now
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        serving = self.serving
        yield GaugeMetricFamily(f"{PREFIX}_active", "1 while this instance serves the bridge, 0 as a standby",
                                value=int(serving is not None))
        if serving is not None:
            yield from serving.registry.collect()

    def problems(self) -> list[str]:
        """The serving bridge's problems; none for a standby."""
        serving = self.serving
        return serving.problems() if serving is not None else []
