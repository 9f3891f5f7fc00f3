"""The performance table of docs/performance.md, made from the JSON of ``spc-bridge bench --json`` runs.

``python -m bridge.bench.markdown RUN.json ...`` prints one column per run, so the page shows exactly what the
runs printed; the runs themselves are kept beside it (docs/bench/).
"""

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Row = tuple[str, Callable[[dict[str, Any]], str]]


def _number(key: str, digits: int = 0) -> Callable[[dict[str, Any]], str]:
    return lambda run: f"{run[key]:,.{digits}f}"


ROWS: tuple[Row, ...] = (
    ("broker", lambda run: str(run["broker"])),
    ("characteristics", _number("characteristics")),
    ("drain: queued QoS 1 readings (readings/s)", _number("drain_rate")),
    ("bare aiomqtt relay, same drain (readings/s)", _number("relay_rate")),
    ("bridge / relay (`ratio`)", _number("ratio", 2)),
    ("bare paho subscriber, same drain (`ceiling_rate`)", _number("ceiling_rate")),
    ("bridge / paho subscriber (`ceiling_ratio`)", _number("ceiling_ratio", 2)),
    ("live, 4 gauges: highest offered rate kept up (readings/s)", _number("max_rate")),
    ("live: sustained with 20 % more offered (readings/s)", _number("live_rate")),
    ("latency p50 at 1,000 readings/s (ms)", _number("latency_p50_ms", 2)),
    ("latency p99 (ms)", _number("latency_p99_ms", 2)),
    ("latency max (ms)", _number("latency_max_ms", 1)),
    ("relay latency p50 / p99 (ms)", lambda run: f"{run['relay_latency_p50_ms']:,.2f} / "
                                                 f"{run['relay_latency_p99_ms']:,.2f}"),
    ("bridge peak RSS (MiB)", lambda run: f"{run['peak_memory_bytes'] / 2**20:,.0f}"),
)


def table(runs: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """A Markdown table: a row per figure, a column per run."""
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(runs)]
    lines += [f"| {label} | " + " | ".join(cell(run) for run in runs) + " |" for label, cell in ROWS]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of the runs given."""
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.markdown")
    parser.add_argument("runs", nargs="+", type=Path, help="files of `spc-bridge bench --json` output")
    args = parser.parse_args(argv)
    runs = []
    for path in args.runs:
        try:
            run = json.loads(path.read_text())
            table([run], [path.stem])  # every figure of the table is there
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            parser.exit(2, f"{path}: not the output of `spc-bridge bench --json`: {error!r}\n")
        runs.append(run)
    text = table(runs, [path.stem for path in args.runs])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
