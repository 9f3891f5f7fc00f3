"""The options of ``spc-bridge bench`` (light: the command line imports it to build its parser)."""

import argparse
from dataclasses import dataclass

from bridge.bench.poison import KINDS, MAX_FRACTION, Mix, parse_kinds

SOURCES = ("json", "kepware", "sparkplug")  # bridge.bench.sources.KINDS, spelled here to keep this module light
MAX_METRICS_PER_MESSAGE = 500  # a Kepware message of 500 tags is about 40 KB, within the bridge's 64 KiB


@dataclass(frozen=True)
class Options:
    """What ``spc-bridge bench`` measures and against what."""

    broker: str = "mosquitto"
    qos: int = 1
    characteristics: int = 10_000
    gauges: int = 4
    duration: float = 10.0
    backlog: int = 100_000
    steps: int = 5
    poison: float = 0.0
    poison_kinds: tuple[str, ...] = KINDS
    source: str = "json"
    metrics_per_message: int = 100

    @property
    def mix(self) -> Mix | None:
        """The poison to mix into the bridge's second drain and latency phase; None: no poison."""
        return Mix(self.poison, self.poison_kinds) if self.poison else None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Options":
        """Options from the command line; ``--quick`` lowers the defaults."""
        defaults = QUICK if args.quick else cls()
        return cls(broker=args.broker, qos=args.qos, gauges=args.gauges,
                   characteristics=args.characteristics or defaults.characteristics,
                   duration=args.duration or defaults.duration,
                   backlog=args.backlog or defaults.backlog, steps=defaults.steps,
                   poison=args.poison, poison_kinds=args.poison_kinds, source=args.source,
                   metrics_per_message=args.metrics_per_message)


QUICK = Options(characteristics=1000, duration=2.0, backlog=5_000, steps=2)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_FRACTION:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction from 0 to {MAX_FRACTION} "
                                         f"(0.01 for 1 %)")
    return value


def _metrics(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_METRICS_PER_MESSAGE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {MAX_METRICS_PER_MESSAGE}")
    return value


def _kinds(text: str) -> tuple[str, ...]:
    try:
        return parse_kinds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``spc-bridge bench``."""
    parser.add_argument("--broker", default="mosquitto",
                        help="embedded, mosquitto (both started on free loopback ports) or the URL "
                             "of a running broker, credentials included (default mosquitto)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1,
                        help="QoS of the gauges' readings in the live phases (the backlog is "
                             "always QoS 1; events are always QoS 1)")
    parser.add_argument("--characteristics", type=int, help="configured characteristics "
                        "(default 10,000; --quick 1,000)")
    parser.add_argument("--gauges", type=int, default=4, help="publishing processes (default 4)")
    parser.add_argument("--duration", type=float,
                        help="seconds of the latency phase (memory is watched over it), of the "
                             "sustained phase up to 30 s, and twice each step's up to 10 s "
                             "(default 10; --quick 2)")
    parser.add_argument("--backlog", type=int,
                        help="readings queued for the drain (default 100,000; --quick 5,000)")
    parser.add_argument("--poison", type=_fraction, default=0.0, metavar="FRACTION",
                        help="also drain the backlog and run the latency phase through the bridge "
                             "with this share of poison messages in place of readings (0.01: 1 %%), "
                             "check that each became one reject, and report both runs")
    parser.add_argument("--poison-kinds", type=_kinds, default=KINDS, metavar="KIND,...",
                        help=f"the poison kinds to rotate through (default all: {', '.join(KINDS)})")
    parser.add_argument("--source", choices=SOURCES, default="json",
                        help="also drain the backlog through a bridge fed by Kepware IoT Gateway JSON or "
                             "Sparkplug B messages of --metrics-per-message readings each, over as many "
                             "characteristics, and report its readings/s beside the JSON drain's "
                             "(default json: the JSON path alone)")
    parser.add_argument("--metrics-per-message", type=_metrics, default=100, metavar="N",
                        help=f"readings in each message of --source (1 to {MAX_METRICS_PER_MESSAGE}, "
                             f"default 100)")
    parser.add_argument("--quick", action="store_true", help="a run of under a minute")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
