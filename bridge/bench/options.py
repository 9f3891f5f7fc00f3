"""The options of ``spc-bridge bench`` (light: the command line imports it to build its parser)."""

import argparse
from dataclasses import dataclass


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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Options":
        """Options from the command line; ``--quick`` lowers the defaults."""
        defaults = QUICK if args.quick else cls()
        return cls(broker=args.broker, qos=args.qos, gauges=args.gauges,
                   characteristics=args.characteristics or defaults.characteristics,
                   duration=args.duration or defaults.duration,
                   backlog=args.backlog or defaults.backlog, steps=defaults.steps)


QUICK = Options(characteristics=1000, duration=2.0, backlog=5_000, steps=2)


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
    parser.add_argument("--quick", action="store_true", help="a run of under a minute")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
