"""The measurements, the same for the bridge and for the relay: drain a backlog, latency at a
fixed rate, the sustained rate with several publishers, the highest rate it keeps up with; the
drain and the latency also with poison messages mixed in; the drain of another source's messages."""

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bridge.bench.ceiling import CeilingSystem
from bridge.bench.load import Load, LoadResult, publish_one, run_load
from bridge.bench.poison import Mix
from bridge.bench.progress import Progress
from bridge.bench.subscriber import Arrival, Collector
from bridge.bench.systems import System
from bridge.bench.workload import Workload

DRAIN_RATE_FLOOR = 100.0   # readings/s: below this a drain is given up as stuck
LAG_S = 1.0                # keeping up: every event arrives within this long after the last reading
WARM_UP_S = 1.0            # arrivals of readings sent in the first second are not counted
ACHIEVED = 0.95            # the gauges must reach this share of the offered rate for a valid step
OVERLOAD = 1.2             # the steps offer up to this multiple of the drain rate, the sustained
                           # phase this multiple of the highest rate kept up
PROBE_S = 1.0              # how long a probe reading's event is awaited before the next probe
BIRTHS_PER_S = 100.0       # characteristics born per second: below this the births are given up as lost


class Stuck(RuntimeError):
    """Events stopped arriving: the system under test is stuck or lost readings."""


@dataclass
class Run:
    """What every phase shares: the broker, the workload, the gauges and the subscriber; and what
    they published: good readings, and poison messages by kind."""

    url: str
    workload: Workload
    gauges: int
    qos: int
    collector: Collector
    progress: Progress
    next_seq: int = 1
    published: int = 0
    poisoned: Counter[str] = field(default_factory=Counter)

    @contextmanager
    def load(self, count: int = 0, rate: float = 0.0, duration: float = 0.0,
             qos: int | None = None, poison: Mix | None = None) -> Iterator[LoadResult]:
        """Publish ``count`` messages (or at ``rate`` for ``duration``) with fresh seqs, counting only
        their events, from gauges that stay connected until the ``with`` block ends; where the source
        has births, the bridge has taken every one before the gauges start."""
        base = self.next_seq
        self.collector.reset(base)
        load = Load(self.workload.publishers(self.gauges), base, count, rate, duration,
                    self.qos if qos is None else qos, poison)
        born = self._born if self.workload.source.births else None
        with run_load(self.url, self.workload, load, ready=born) as result:
            self.next_seq = max(base, result.last_seq + 1)  # gauges of a paced load differ in count
            self.published += result.published
            self.poisoned += result.poison
            yield result

    def wait(self, count: int, what: str) -> list[Arrival]:
        """Wait until ``count`` events have arrived, as long as they keep arriving."""
        timeout = 60.0 + count / DRAIN_RATE_FLOOR

        def tick(n: int) -> None:
            self.progress.tick(f"{what} {n:,}/{count:,} events")

        if not self.collector.wait_for(count, timeout, tick):
            raise Stuck(f"{what}: {self.collector.count:,} of {count:,} events after {timeout:.0f} s")
        return self.collector.snapshot()

    def _born(self) -> None:
        """Wait until every characteristic has said it is live: the bridge has taken the births."""
        count = self.workload.characteristics
        timeout = 60.0 + count / BIRTHS_PER_S

        def tick(n: int) -> None:
            self.progress.tick(f"births: {n:,}/{count:,} characteristics live")

        if not self.collector.wait_for(count, timeout, tick, live=True):
            raise Stuck(f"births: {self.collector.live_count:,} of {count:,} characteristics live "
                        f"after {timeout:.0f} s")


def subscribed(run: Run, system: System, topic: str, timeout: float = 120.0) -> None:
    """Wait until a reading on ``topic``, the system's last subscription, comes out as an event:
    a system may say it is connected before the broker has taken all its subscriptions."""
    run.progress.phase(f"{system.name}: waiting for its subscriptions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seq = run.next_seq
        run.next_seq += 1
        run.collector.reset(seq)
        publish_one(run.url, topic, seq)
        if run.collector.wait_for(1, PROBE_S, lambda _: None):
            run.published += 1
            return
    raise Stuck(f"{system.name}: no event for a reading on {topic} within {timeout:.0f} s")


def warm_up(run: Run, system: System, count: int) -> None:
    """``count`` messages through the running system (a reading for each characteristic, at least):
    every subscription works; probed first unless the system's ready line says so already."""
    if system.probe:
        subscribed(run, system, run.workload.source.topic(run.workload.streams()[-1]))
    run.progress.phase(f"{system.name}: warm-up, one reading per characteristic")
    with run.load(count=count, qos=1) as result:
        run.wait(result.published, "warm-up")


@dataclass(frozen=True)
class Drain:
    """A backlog consumed: ``count`` readings and poison messages in ``seconds``, from the system's
    connection (when its backlog starts to flow) to the last reading's event; for a source without a
    backlog, from the first publication."""

    count: int
    seconds: float

    @property
    def rate(self) -> float:
        """Messages per second (readings per second without poison)."""
        return (self.count - 1) / self.seconds


def _what(run: Run) -> str:
    """What the progress line calls the messages: readings, or a batched source's messages."""
    if run.workload.source.batched:
        return f"{run.workload.kind} messages of {run.workload.per_message} readings"
    return "readings"


def _poisoned(poison: Mix | None) -> str:
    return f" ({poison.fraction:.1%} poison)" if poison else ""


def drain(run: Run, system: System, count: int, poison: Mix | None = None) -> Drain:
    """Queue ``count`` QoS 1 messages on the stopped system's persistent session, start it, and
    time from its connection to its last event (every reading committed and its event received).

    Not from its first event: the broker sends the queued backlog ahead of the PUBACKs of the
    system's first events on the same connection, so its events can stall for seconds while it goes
    on committing, and then come in a burst; timed from the first event, the work done meanwhile
    would look free.
    """
    run.progress.phase(f"{system.name}: queueing {count:,} QoS 1 {_what(run)}{_poisoned(poison)} "
                       f"while it is stopped")
    system.stop()
    with run.load(count=count, qos=1, poison=poison) as result:
        run.progress.phase(f"{system.name}: draining {count:,} {_what(run)}{_poisoned(poison)}")
        system.start()
        connected = time.time()
        arrivals = run.wait(result.published, "drain")
    return Drain(len(arrivals) + result.poison.total(), arrivals[-1].at - connected)


def ceiling_drain(run: Run, ceiling: CeilingSystem, count: int) -> Drain:
    """The same drain for a bare paho subscriber (``ceiling.py``): ``count`` QoS 1 readings queued on its
    session, timed from its connection to the last reading's arrival."""
    run.progress.phase(f"{ceiling.name}: queueing {count:,} QoS 1 readings for a bare paho subscriber")
    ceiling.subscribe()
    with run.load(count=count, qos=1) as result:
        run.progress.phase(f"{ceiling.name}: a bare paho subscriber draining {count:,} readings")
        connected, last = ceiling.drain(result.published)
    return Drain(result.published, last - connected)


def source_drain(run: Run, system: System, messages: int) -> Drain:
    """``messages`` of the workload's source through the system: queued while it is stopped where its
    session keeps them (``drain``); else, once the publishers are born, published as fast as the broker
    takes them, from the first publication to the last reading's event."""
    if run.workload.source.queued:
        return drain(run, system, messages)
    run.progress.phase(f"{system.name}: publishing {messages:,} QoS 1 {_what(run)} live")
    with run.load(count=messages, qos=1) as result:
        arrivals = run.wait(result.published, "drain")
    return Drain(len(arrivals), arrivals[-1].at - result.first)


@dataclass(frozen=True)
class Latency:
    """Gauge publish to event receipt, in seconds."""

    p50: float
    p99: float
    max: float
    count: int


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def latency(run: Run, system: System, rate: float, duration: float,
            poison: Mix | None = None) -> Latency:
    """Latencies of readings offered at ``rate`` messages per second for ``duration`` seconds."""
    run.progress.phase(f"{system.name}: latency at {rate:,.0f} readings/s{_poisoned(poison)} "
                       f"for {duration:.0f} s")
    with run.load(rate=rate, duration=duration, poison=poison) as result:
        arrivals = run.wait(result.published, "latency")
    values = sorted(a.latency for a in arrivals if a.at - a.latency >= result.first + WARM_UP_S)
    values = values or sorted(a.latency for a in arrivals)
    return Latency(_percentile(values, 0.5), _percentile(values, 0.99), values[-1], len(values))


def sustained(run: Run, system: System, rate: float, duration: float) -> float:
    """Events per second while the gauges offer ``rate`` (a little more than the system keeps up
    with) for ``duration`` seconds: its throughput with publishers live."""
    run.progress.phase(f"{system.name}: {run.gauges} gauges offering {rate:,.0f} readings/s "
                       f"for {duration:.0f} s")
    with run.load(rate=rate, duration=duration) as result:
        arrivals = run.wait(result.published, "sustained")
    begin = result.first + min(WARM_UP_S, duration / 4)
    during = sum(1 for a in arrivals if begin <= a.at <= result.last)
    return during / (result.last - begin)


@dataclass(frozen=True)
class Step:
    """One offered rate: what the gauges achieved and how late the last event came."""

    offered: float
    achieved: float
    lag: float

    @property
    def kept_up(self) -> bool:
        """The gauges reached the rate and every event came within LAG_S of the last reading."""
        return self.achieved >= ACHIEVED * self.offered and self.lag <= LAG_S


def _step(run: Run, system: System, rate: float, duration: float) -> Step:
    run.progress.phase(f"{system.name}: offered {rate:,.0f} readings/s for {duration:.0f} s")
    with run.load(rate=rate, duration=duration) as result:
        arrivals = run.wait(result.published, "offered rate")
    return Step(rate, result.rate, arrivals[-1].at - result.last)


def highest_rate(run: Run, system: System, ceiling: float, duration: float, steps: int) -> float:
    """The highest offered rate below ``ceiling`` (within a bisection of ``steps`` steps) at which
    every event arrives within LAG_S of the last reading; 0 if even the lowest step falls behind."""
    low, high = 0.0, ceiling
    rate = ceiling / 2
    for _ in range(steps):
        rate = round(rate, -2) or 100.0
        if _step(run, system, rate, duration).kept_up:
            low = max(low, rate)
        else:
            high = min(high, rate)
        rate = (low + high) / 2
    return low
