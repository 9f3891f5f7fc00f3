"""A whole benchmark run: broker, bridge, relay, gauges and subscriber, then the report; with
``--source``, a bridge fed by that source too."""

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bridge.bench import phases, poison
from bridge.bench.brokers import BenchBroker, client_id, open_broker
from bridge.bench.ceiling import CeilingSystem
from bridge.bench.options import Options
from bridge.bench.phases import OVERLOAD, Drain, Run
from bridge.bench.poison import Mix
from bridge.bench.progress import Progress
from bridge.bench.report import Figures, Memory, Poisoned, Report, SourceFigures
from bridge.bench.subscriber import Collector
from bridge.bench.systems import BridgeSystem, RelaySystem, System, check_stored_once, end_session
from bridge.bench.workload import Workload

LATENCY_RATE = 1000.0  # readings per second
MIN_RATE = 100.0
LIVE_MAX_S = 30.0      # a long --duration (memory flat over minutes) lengthens the latency phase only
STEP_MAX_S = 10.0

S = TypeVar("S", bound=System)
T = TypeVar("T")


@dataclass(frozen=True)
class _Measured:
    """A system's figures and its memory: after the warm-up, its growth over the latency phase,
    and its peak; and its figures with poison mixed in, if asked."""

    figures: Figures
    loaded: int
    growth: int
    peak: int
    poisoned: Poisoned | None = None


@contextmanager
def _running(system: System) -> Iterator[None]:
    """The system started for the block, then stopped; its session ended if all went well."""
    system.start()
    try:
        yield
    finally:
        system.stop()
    system.discard_session()


def _measure(run: Run, system: System, options: Options) -> _Measured:
    """Start the system, run every phase, stop it. The bridge, with poison asked for, drains and
    runs the latency phase a second time with poison, after the clean ones."""
    run.progress.phase(f"{system.name}: starting with {options.characteristics:,} characteristics")
    mix = options.mix if isinstance(system, BridgeSystem) else None
    with _running(system):
        phases.warm_up(run, system, options.characteristics)
        loaded, _ = system.memory()
        first_seq, published = run.next_seq, run.published
        drain = phases.drain(run, system, options.backlog)
        before, _ = system.memory()
        latency = phases.latency(run, system, LATENCY_RATE, options.duration)
        after, _ = system.memory()
        poisoned = _poisoned(run, system, options, mix) if mix is not None else None
        step = min(max(2.0, options.duration / 2), STEP_MAX_S)
        highest = phases.highest_rate(run, system, OVERLOAD * drain.rate, step, options.steps)
        live = phases.sustained(run, system, OVERLOAD * max(highest, MIN_RATE),
                                min(options.duration, LIVE_MAX_S))
        _, peak = system.memory()
        if isinstance(system, BridgeSystem):
            _check_stored_once(system, first_seq, run.published - published)
            _check_rejects(system, run)
    return _Measured(Figures(drain, latency, live, highest), loaded, after - before, peak, poisoned)


def _measure_source(run: Run, bridge: BridgeSystem, options: Options) -> SourceFigures:
    """Start the bridge fed by another source, warm it up with a message per stream, drain the
    backlog's messages, stop it; every reading stored once and nothing rejected, or the run fails."""
    workload = run.workload
    run.progress.phase(f"{bridge.name}: starting with {options.characteristics:,} characteristics")
    with _running(bridge):
        phases.warm_up(run, bridge, len(workload.streams()))
        messages = workload.messages(options.backlog)
        drain = phases.source_drain(run, bridge, messages)
        _check_stored_once(bridge, None, run.published)
        _check_rejects(bridge, run)
    return SourceFigures(workload.kind, workload.per_message, messages, drain, workload.source.queued)


def _poisoned(run: Run, system: System, options: Options, mix: Mix) -> Poisoned:
    """The drain and the latency phase again, with ``mix`` of poison messages in the stream."""
    drain = phases.drain(run, system, options.backlog, mix)
    latency = phases.latency(run, system, LATENCY_RATE, options.duration, mix)
    return Poisoned(mix, drain, latency, run.poisoned.copy())


def _check_stored_once(bridge: BridgeSystem, first_seq: int | None, published: int) -> None:
    """Every good reading published since the warm-up (None: ever) is in the database, once."""
    check_stored_once(*bridge.stored(first_seq), published)


def _check_rejects(bridge: BridgeSystem, run: Run) -> None:
    """Every poison message is one reject, and no good reading is."""
    problem = poison.unmatched(run.poisoned, bridge.rejected_payloads())
    if problem is not None:
        raise RuntimeError(f"the bridge's rejects do not match the poison sent: {problem}")


def _baseline_memory(workdir: Path, url: str, gauges: int, readings: int, progress: Progress) -> int:
    """RSS of a bridge with one characteristic after ``readings`` readings (as many as the
    warm-up of the measured bridge), to tell what the characteristics cost."""
    workload = Workload(1)
    bridge = BridgeSystem(workdir, url, workload.write_config(workdir / "one-characteristic.toml"),
                          client_id(url, "baseline"))
    progress.phase("bridge with one characteristic: baseline memory")
    collector = Collector(url, bridge.events, client_id(url, "baseline-subscriber"))
    try:
        with _running(bridge):
            phases.warm_up(Run(url, workload, gauges, 1, collector, progress), bridge, readings)
            rss, _ = bridge.memory()
    finally:
        collector.close()
    return rss


def _with_collector(broker: BenchBroker, system: S, workload: Workload, options: Options, progress: Progress,
                    measure: Callable[[Run, S, Options], T]) -> T:
    """``measure`` the system, fed ``workload``, with a subscriber to its events."""
    collector = Collector(broker.url, system.events, client_id(broker.url, f"{system.name}-subscriber"),
                          workload.identify(), statuses=workload.source.births)
    try:
        run = Run(broker.url, workload, options.gauges, options.qos, collector, progress)
        return measure(run, system, options)
    finally:
        collector.close()


def _source(broker: BenchBroker, workdir: Path, options: Options, progress: Progress) -> SourceFigures:
    """The drain of a bridge of its own fed by ``options.source``, over as many characteristics."""
    workload = Workload(options.characteristics, options.source, options.metrics_per_message,
                        int(time.time() * 1000))
    name = f"bridge-{options.source}"
    bridge = BridgeSystem(workdir, broker.url, workload.write_config(workdir / f"{options.source}.toml"),
                          client_id(broker.url, name), name, workload.source.online_filter())
    return _with_collector(broker, bridge, workload, options, progress, _measure_source)


def _ceiling(broker: BenchBroker, workdir: Path, config: Path, workload: Workload, options: Options,
             progress: Progress) -> Drain:
    """The drain of the same backlog by a bare paho subscriber (``ceiling.py``); its session ended after."""
    ceiling = CeilingSystem(workdir, broker.url, config, client_id(broker.url, "ceiling"))
    # a Run needs a subscriber to events; the ceiling counts what it takes itself, so this one listens to nothing
    collector = Collector(broker.url, "bench/none", client_id(broker.url, "ceiling-subscriber"))
    try:
        return phases.ceiling_drain(Run(broker.url, workload, options.gauges, options.qos, collector, progress),
                                    ceiling, options.backlog)
    finally:
        collector.close()
        end_session(broker.url, ceiling.client_id)


def run_bench(options: Options, progress: Progress) -> Report:
    """Run every phase against the chosen broker; stops everything it started."""
    with tempfile.TemporaryDirectory(prefix="spc-bench-") as tmp:
        workdir = Path(tmp)
        progress.phase(f"starting the {options.broker} broker")
        broker = open_broker(options.broker, workdir)
        try:
            workload = Workload(options.characteristics)
            config = workload.write_config(workdir / "characteristics.toml")
            bridge = _with_collector(broker, BridgeSystem(workdir, broker.url, config,
                                                          client_id(broker.url, "bridge")),
                                     workload, options, progress, _measure)
            source = _source(broker, workdir, options, progress) if options.source != "json" else None
            ceiling = _ceiling(broker, workdir, config, workload, options, progress)
            relay = _with_collector(broker, RelaySystem(workdir, broker.url, config,
                                                        client_id(broker.url, "relay")),
                                    workload, options, progress, _measure)
            baseline = _baseline_memory(workdir, broker.url, options.gauges, options.characteristics,
                                        progress)
        finally:
            broker.stop()
            progress.done()
    per_characteristic = (bridge.loaded - baseline) / max(1, options.characteristics - 1)
    return Report(broker.kind, options.qos, options.characteristics, options.gauges,
                  options.duration, options.backlog, LATENCY_RATE, bridge.figures, relay.figures, ceiling,
                  Memory(bridge.peak, per_characteristic, bridge.growth), bridge.poisoned, source)


def main(args: argparse.Namespace) -> int:
    """``spc-bridge bench``: run, then print the table (or JSON)."""
    options = Options.from_args(args)
    report = run_bench(options, Progress())
    print(json.dumps(report.as_json()) if args.json else report.table(), file=sys.stdout, flush=True)
    return 0
