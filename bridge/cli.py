"""The ``spc-bridge`` command line: it only parses options and wires the parts together."""

import argparse
import faulthandler
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from bridge.config import ConfigError, add_settings_arguments, load_characteristics, settings_from_args

log = logging.getLogger("spc-bridge")


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (graceful stop); call it before starting any thread.

    The signals are blocked in every thread and taken by one waiting thread, so a stop never
    depends on which thread the kernel picks or on what the main thread is doing.
    """
    stop = threading.Event()
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    def wait() -> None:
        signal.sigwait(signals)
        stop.set()

    threading.Thread(target=wait, name="signals", daemon=True).start()
    return stop


def _run(args: argparse.Namespace) -> int:
    from bridge.service.runner import Bridge

    settings = settings_from_args(args)
    configs = load_characteristics(settings.config_path)
    log.info("bridge %s: %d characteristics, broker %s, database %s", settings.client_id,
             len(configs), settings.broker, settings.db_url.split("@")[-1])
    stop = stop_on_signals()
    Bridge(settings, configs).run(stop)
    return 0


def _broker(args: argparse.Namespace) -> int:
    from broker.embedded import BrokerStartError, run_broker

    print(f"embedded broker: mqtt://{args.host}:{args.port} and ws://{args.host}:{args.ws_port}/mqtt"
          " (Ctrl-C stops it)", flush=True)
    try:
        run_broker(args.host, args.port, args.ws_port)
    except BrokerStartError as error:
        print(f"spc-bridge: {error}", file=sys.stderr)
        return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo
    from broker.embedded import BrokerStartError

    try:
        return run_demo(args.port, args.ws_port, args.db, stop_on_signals())
    except BrokerStartError as error:
        print(f"spc-bridge: {error}", file=sys.stderr)
        return 2


def _tail(args: argparse.Namespace) -> int:
    from bridge.tail import tail

    return tail(args.broker, args.filter, stop_on_signals())


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


def _add_ports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=1883, help="MQTT/TCP port (default 1883)")
    parser.add_argument("--ws-port", type=int, default=9001,
                        help="MQTT-over-WebSocket port (default 9001)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="spc-bridge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bridge against a broker")
    add_settings_arguments(run)
    run.set_defaults(handler=_run)

    broker = commands.add_parser("broker", help="run the embedded MQTT broker alone")
    broker.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    _add_ports(broker)
    broker.set_defaults(handler=_broker)

    demo = commands.add_parser("demo", help="embedded broker + bridge + SQLite + simulated gauges")
    _add_ports(demo)
    demo.add_argument("--db", default="sqlite:///spc-demo.db", help="database URL")
    demo.set_defaults(handler=_demo)

    tail = commands.add_parser("tail", help="print events as they arrive")
    tail.add_argument("filter", nargs="?", default="spc/#",
                      help="a characteristic id or an MQTT topic filter (default spc/#)")
    tail.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL")
    tail.set_defaults(handler=_tail)

    bench = commands.add_parser("bench-engine", help="micro-benchmark of the SPC engine")
    bench.add_argument("--points", type=int, default=1_000_000, help="points to evaluate")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.set_defaults(handler=_bench_engine)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>` shows every thread
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except (ConfigError, OSError) as error:
        print(f"spc-bridge: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
