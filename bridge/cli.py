"""The ``spc-bridge`` command line: it only parses options and wires the parts together."""

import argparse
import json
import sys
from typing import Sequence


def _bench_engine(args: argparse.Namespace) -> int:
    from bridge.spc.bench import bench_engine

    result = bench_engine(args.points)
    if args.json:
        print(json.dumps({
            "points": result.points, "seconds": round(result.seconds, 3),
            "evaluations_per_second": round(result.rate), "violations": result.violations,
        }))
    else:
        print(f"SPC engine, individuals chart, all 8 Nelson rules, one core:\n"
              f"  {result.points:,} points in {result.seconds:.2f} s = "
              f"{result.rate:,.0f} evaluations/s ({result.violations} violations raised)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="spc-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench-engine", help="micro-benchmark of the SPC engine")
    bench.add_argument("--points", type=int, default=1_000_000, help="points to evaluate")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.set_defaults(handler=_bench_engine)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
