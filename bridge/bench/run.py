"""A whole benchmark run: broker, bridge, relay, gauges and subscriber, then the report."""

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bridge.bench import phases
from bridge.bench.brokers import BenchBroker, open_broker
from bridge.bench.options import Options
from bridge.bench.phases import OVERLOAD, Run
from bridge.bench.progress import Progress
from bridge.bench.report import Figures, Memory, Report
from bridge.bench.subscriber import Collector
from bridge.bench.systems import BridgeSystem, RelaySystem, System
from bridge.bench.workload import write_config

LATENCY_RATE = 1000.0  # readings per second
MIN_RATE = 100.0
LIVE_MAX_S = 30.0      # a long --duration (memory flat over minutes) lengthens the latency phase only
STEP_MAX_S = 10.0


@dataclass(frozen=True)
class _Measured:
    """A system's figures and its memory: after the warm-up, its growth over the latency phase,
    and its peak."""

    figures: Figures
    loaded: int
    growth: int
    peak: int


def _measure(run: Run, system: System, options: Options) -> _Measured:
    """Start the system, run every phase, stop it."""
    run.progress.phase(f"{system.name}: starting with {options.characteristics:,} characteristics")
    system.start()
    try:
        phases.warm_up(run, system, options.characteristics)
        loaded, _ = system.memory()
        first_seq, published = run.next_seq, run.published
        drain = phases.drain(run, system, options.backlog)
        before, _ = system.memory()
        latency = phases.latency(run, system, LATENCY_RATE, options.duration)
        after, _ = system.memory()
        step = min(max(2.0, options.duration / 2), STEP_MAX_S)
        highest = phases.highest_rate(run, system, OVERLOAD * drain.rate, step, options.steps)
        live = phases.sustained(run, system, OVERLOAD * max(highest, MIN_RATE),
                                min(options.duration, LIVE_MAX_S))
        _, peak = system.memory()
        if isinstance(system, BridgeSystem):
            _check_stored_once(system, first_seq, run.published - published)
    finally:
        system.stop()
    system.discard_session()
    return _Measured(Figures(drain, latency, live, highest), loaded, after - before, peak)


def _check_stored_once(bridge: BridgeSystem, first_seq: int, published: int) -> None:
    """Every reading published since the warm-up is in the database, once."""
    rows, distinct = bridge.stored(first_seq)
    if rows != published or distinct != published:
        raise RuntimeError(f"the bridge stored {rows:,} rows ({distinct:,} distinct readings) of "
                           f"the {published:,} readings published")


def _baseline_memory(workdir: Path, url: str, gauges: int, readings: int, progress: Progress) -> int:
    """RSS of a bridge with one characteristic after ``readings`` readings (as many as the
    warm-up of the measured bridge), to tell what the characteristics cost."""
    config = write_config(workdir / "one-characteristic.toml", 1)
    bridge = BridgeSystem(workdir, url, config, "bench-baseline")
    progress.phase("bridge with one characteristic: baseline memory")
    collector = Collector(url, bridge.events, "bench-baseline-subscriber")
    bridge.start()
    try:
        phases.warm_up(Run(url, config, gauges, 1, collector, progress), bridge, readings)
        rss, _ = bridge.memory()
    finally:
        bridge.stop()
        collector.close()
    bridge.discard_session()
    return rss


def _with_collector(broker: BenchBroker, system: System, options: Options, config: Path,
                    progress: Progress) -> _Measured:
    collector = Collector(broker.url, system.events, f"bench-{system.name}-subscriber")
    try:
        run = Run(broker.url, config, options.gauges, options.qos, collector, progress)
        return _measure(run, system, options)
    finally:
        collector.close()


def run_bench(options: Options, progress: Progress) -> Report:
    """Run every phase against the chosen broker; stops everything it started."""
    with tempfile.TemporaryDirectory(prefix="spc-bench-") as tmp:
        workdir = Path(tmp)
        progress.phase(f"starting the {options.broker} broker")
        broker = open_broker(options.broker, workdir)
        try:
            config = write_config(workdir / "characteristics.toml", options.characteristics)
            bridge = _with_collector(broker, BridgeSystem(workdir, broker.url, config, "bench-bridge"),
                                     options, config, progress)
            relay = _with_collector(broker, RelaySystem(workdir, broker.url, config, "bench-relay"),
                                    options, config, progress)
            baseline = _baseline_memory(workdir, broker.url, options.gauges, options.characteristics,
                                        progress)
        finally:
            broker.stop()
            progress.done()
    per_characteristic = (bridge.loaded - baseline) / max(1, options.characteristics - 1)
    return Report(broker.kind, options.qos, options.characteristics, options.gauges,
                  options.duration, options.backlog, LATENCY_RATE, bridge.figures, relay.figures,
                  Memory(bridge.peak, per_characteristic, bridge.growth))


def main(args: argparse.Namespace) -> int:
    """``spc-bridge bench``: run, then print the table (or JSON)."""
    options = Options.from_args(args)
    report = run_bench(options, Progress())
    print(json.dumps(report.as_json()) if args.json else report.table(), file=sys.stdout, flush=True)
    return 0
