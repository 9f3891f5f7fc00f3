"""The result of a benchmark run: one table for people, one JSON object for machines."""

import os
import platform
from collections import Counter
from dataclasses import dataclass

from bridge.bench.phases import OVERLOAD, Drain, Latency
from bridge.bench.poison import Mix

MIB = 1024 * 1024


def machine() -> str:
    """Cores and interpreter, because absolute figures depend on them."""
    return f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


@dataclass(frozen=True)
class Figures:
    """What was measured for one system (the bridge or the relay)."""

    drain: Drain
    latency: Latency
    live_rate: float
    highest_rate: float


@dataclass(frozen=True)
class Memory:
    """The bridge's memory: peak RSS, per characteristic beyond a one-characteristic bridge,
    and the change of RSS over the latency phase (flat means no growth per reading)."""

    peak: int
    per_characteristic: float
    growth: int


@dataclass(frozen=True)
class Poisoned:
    """The bridge's drain and latency with ``mix`` of poison messages in place of readings, and
    the poison messages sent in all by kind (each became one reject, or the run failed)."""

    mix: Mix
    drain: Drain
    latency: Latency
    sent: Counter[str]


@dataclass(frozen=True)
class SourceFigures:
    """The bridge's drain of ``messages`` messages of another source, ``per_message`` readings each
    (the drain counts readings); ``queued``: the backlog waited on the bridge's session while it was
    stopped, else it was published live to the running bridge."""

    kind: str
    per_message: int
    messages: int
    drain: Drain
    queued: bool

    def how(self) -> str:
        """How the drain was measured, in words."""
        if self.queued:
            return "queued while the bridge was stopped, its connection to the last event"
        return ("published live once the edge nodes were born, as the Sparkplug host's clean session keeps "
                "no backlog; first publication to last event")


@dataclass(frozen=True)
class Report:
    """A whole run."""

    broker: str
    qos: int
    characteristics: int
    gauges: int
    duration: float
    backlog: int
    latency_rate: float
    bridge: Figures
    relay: Figures
    ceiling: Drain  # a bare paho subscriber's drain of the same backlog
    memory: Memory
    poisoned: Poisoned | None = None
    source: SourceFigures | None = None

    @property
    def ratio(self) -> float:
        """The headline: the bridge's drain rate over the bare relay's."""
        return self.bridge.drain.rate / self.relay.drain.rate

    @property
    def ceiling_ratio(self) -> float:
        """The bridge's drain rate over a bare paho subscriber's: how near it comes to any Python consumer."""
        return self.bridge.drain.rate / self.ceiling.rate

    def machine(self) -> str:
        """Cores and interpreter, because absolute figures depend on them."""
        return machine()

    def as_json(self) -> dict[str, object]:
        """Machine-readable figures (rates in readings/s, latencies in ms, memory in bytes)."""
        out: dict[str, object] = {
            "broker": self.broker, "qos": self.qos, "characteristics": self.characteristics,
            "gauges": self.gauges, "duration": self.duration, "backlog": self.backlog,
            "machine": self.machine(), "ratio": round(self.ratio, 3),
        }
        for prefix, figures in (("", self.bridge), ("relay_", self.relay)):
            out |= {
                f"{prefix}drain_rate": round(figures.drain.rate),
                f"{prefix}live_rate": round(figures.live_rate),
                f"{prefix}max_rate": round(figures.highest_rate),
                f"{prefix}latency_p50_ms": round(figures.latency.p50 * 1000, 2),
                f"{prefix}latency_p99_ms": round(figures.latency.p99 * 1000, 2),
                f"{prefix}latency_max_ms": round(figures.latency.max * 1000, 2),
            }
        out["relay_rate"] = out.pop("relay_drain_rate")
        out |= {"ceiling_rate": round(self.ceiling.rate), "ceiling_ratio": round(self.ceiling_ratio, 3)}
        out |= {
            "peak_memory_bytes": self.memory.peak,
            "memory_per_characteristic_bytes": round(self.memory.per_characteristic),
            "memory_growth_bytes": self.memory.growth,
        }
        return out | self._poison_json() | self._source_json()

    def _poison_json(self) -> dict[str, object]:
        """The poisoned run beside the clean one: its drain in messages/s (poison included), the
        ratios poisoned / clean, the latencies of its good readings, the poison sent by kind."""
        p, clean = self.poisoned, self.bridge
        if p is None:
            return {}
        return {
            "poison_fraction": p.mix.fraction, "poison_messages": p.sent.total(),
            "poison_kinds": dict(sorted(p.sent.items())),
            "poison_drain_rate": round(p.drain.rate),
            "poison_drain_ratio": round(p.drain.rate / clean.drain.rate, 3),
            "poison_latency_p50_ms": round(p.latency.p50 * 1000, 2),
            "poison_latency_p99_ms": round(p.latency.p99 * 1000, 2),
            "poison_latency_max_ms": round(p.latency.max * 1000, 2),
            "poison_latency_p50_ratio": round(p.latency.p50 / clean.latency.p50, 3),
            "poison_latency_p99_ratio": round(p.latency.p99 / clean.latency.p99, 3),
        }

    def _source_json(self) -> dict[str, object]:
        """The other source's drain beside the JSON drain: its readings/s and the ratio of the two."""
        s = self.source
        if s is None:
            return {}
        return {"source": {
            "kind": s.kind, "metrics_per_message": s.per_message, "messages": s.messages,
            "readings": s.drain.count, "drain": "queued" if s.queued else "live",
            "readings_per_s": round(s.drain.rate), "json_readings_per_s": round(self.bridge.drain.rate),
            "ratio": round(s.drain.rate / self.bridge.drain.rate, 3),
        }}

    def table(self) -> str:
        """The table printed by ``spc-bridge bench``."""
        b, r = self.bridge, self.relay
        rows = [
            (f"drain: {self.backlog:,} queued QoS 1 readings (readings/s)",
             b.drain.rate, r.drain.rate, "{:,.0f}"),
            (f"live, {self.gauges} gauges: highest offered rate kept up (readings/s)", b.highest_rate,
             r.highest_rate, "{:,.0f}"),
            (f"live: sustained with {OVERLOAD - 1:.0%} more offered (readings/s)", b.live_rate,
             r.live_rate, "{:,.0f}"),
            (f"latency p50 at {self.latency_rate:,.0f} readings/s (ms)",
             b.latency.p50 * 1000, r.latency.p50 * 1000, "{:,.1f}"),
            ("latency p99 (ms)", b.latency.p99 * 1000, r.latency.p99 * 1000, "{:,.1f}"),
            ("latency max (ms)", b.latency.max * 1000, r.latency.max * 1000, "{:,.1f}"),
        ]
        width = max(len(label) for label, *_ in rows)
        lines = [
            f"spc-bridge bench: broker {self.broker}, readings at QoS {self.qos}, "
            f"{self.characteristics:,} characteristics, {self.machine()}",
            f"{'':{width}}  {'bridge':>10}  {'relay':>10}  {'bridge/relay':>12}",
        ]
        for label, mine, theirs, number in rows:
            ratio = f"{mine / theirs:.2f}x" if theirs else "-"
            lines.append(f"{label:{width}}  {number.format(mine):>10}  {number.format(theirs):>10}  "
                         f"{ratio:>12}")
        m = self.memory
        lines.append(f"bridge memory: peak {m.peak / MIB:,.1f} MiB; "
                     f"{m.per_characteristic:,.0f} bytes per characteristic; "
                     f"{m.growth / MIB:+,.1f} MiB over the {self.duration:.0f} s latency phase")
        p = self.poisoned
        if p is not None:
            lines.append(
                f"with {p.mix.fraction:.1%} poison ({p.sent.total():,} messages of {len(p.sent)} "
                f"kinds, each stored as one reject): drain {p.drain.rate:,.0f} messages/s, "
                f"{p.drain.rate / b.drain.rate:.2f}x the clean run; latency p50 / p99 "
                f"{p.latency.p50 * 1000:,.1f} / {p.latency.p99 * 1000:,.1f} ms "
                f"(clean {b.latency.p50 * 1000:,.1f} / {b.latency.p99 * 1000:,.1f})")
        s = self.source
        if s is not None:
            lines.append(
                f"{s.kind} source: {s.drain.count:,} readings in {s.messages:,} messages of {s.per_message} "
                f"readings ({s.how()}): {s.drain.rate:,.0f} readings/s, {s.drain.rate / b.drain.rate:.2f}x the JSON "
                f"drain's {b.drain.rate:,.0f}; no bare relay run for this source")
        lines.append(f"ceiling: a bare paho subscriber drains the same backlog at {self.ceiling.rate:,.0f} "
                     f"readings/s; the bridge reaches {self.ceiling_ratio:.2f}x of it")
        lines.append(f"headline: the bridge drains {self.ratio:.2f}x as fast as a bare aiomqtt relay")
        return "\n".join(lines)
