"""The ``spc-bridge`` command line: it only parses options and wires the parts together."""

import argparse
import faulthandler
import getpass
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from bridge.bench.options import add_arguments as add_bench_arguments
from bridge.config import ConfigError, add_settings_arguments, load_characteristics, settings_from_args
from bridge.gateway.settings import add_gateway_arguments
from broker.roles import ROLES
from broker.users import UsersError

log = logging.getLogger("spc-bridge")
USERS_ENV = "SPC_BRIDGE_USERS"


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
    bridge = Bridge(settings, configs)
    del configs  # the bridge keeps only what running them needs (memory per characteristic)
    bridge.run(stop)
    return 0


def _broker(args: argparse.Namespace) -> int:
    from broker.embedded import BrokerStartError, EmbeddedBroker, TlsListeners, run_broker

    users = None if args.allow_anonymous else args.users
    if users is None and not args.allow_anonymous:
        print(f"spc-bridge: broker: give --users DIR (or set {USERS_ENV}; create users with `spc-bridge user "
              "add`), or --allow-anonymous for a broker open to anyone on this machine", file=sys.stderr)
        return 2
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_ca is not None and args.tls_cert is None):
        print("spc-bridge: broker: --tls-cert and --tls-key go together, and --tls-ca needs them", file=sys.stderr)
        return 2
    tls = None if args.tls_cert is None else TlsListeners(args.tls_cert, args.tls_key, args.tls_port,
                                                          args.wss_port, args.tls_ca)

    def ready(broker: EmbeddedBroker) -> None:
        urls = [f"mqtt://{broker.host}:{broker.port}", f"ws://{broker.host}:{broker.ws_port}/mqtt"]
        if broker.tls is not None:
            urls += [f"mqtts://{broker.host}:{broker.tls.port}", f"wss://{broker.host}:{broker.tls.ws_port}/mqtt"]
        access = f"users of {users}" if users is not None else "anonymous: no passwords, anyone on this machine"
        print(f"embedded broker: {', '.join(urls)}; {access} (Ctrl-C stops it)", flush=True)

    try:
        run_broker(args.host, args.port, args.ws_port, users=users, tls=tls, on_ready=ready)
    except BrokerStartError as error:
        print(f"spc-bridge: {error}", file=sys.stderr)
        return 2
    return 0


def _read_password(name: str, from_stdin: bool) -> str:
    """The new password: one line of standard input, or typed twice at a prompt that does not echo it."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("the same again: ") != password:
        raise UsersError("the two passwords differ")
    return password


def _user_add(args: argparse.Namespace) -> int:
    from broker.users import User, UserDirectory

    user = User(args.name, args.role, tuple(args.topics))  # checked before the password is asked for
    replaced = UserDirectory(args.dir).add(user, _read_password(user.name, args.password_stdin))
    print(f"user {user.name} ({user.role}) {'replaced' if replaced else 'added'} in {args.dir}; "
          "reload Mosquitto (kill -HUP) and restart `spc-bridge broker` to apply")
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    from broker.users import UserDirectory

    UserDirectory(args.dir).remove(args.name)
    print(f"user {args.name} removed from {args.dir}; reload Mosquitto (kill -HUP) and restart "
          "`spc-bridge broker` to apply")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    from broker.users import UserDirectory

    rows = [("NAME", "ROLE", "PASSWORD", "TOPICS")]
    rows += [(user.name, user.role, "set" if has_password else "none", " ".join(user.topics))
             for user, has_password in UserDirectory(args.dir).with_passwords()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print(("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3]).rstrip())
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

    return tail(args.broker, args.filter, stop_on_signals(), args.ca_file)


def _gateway(args: argparse.Namespace) -> int:
    from bridge.gateway.server import GatewayError, run_gateway
    from bridge.gateway.settings import gateway_settings_from_args

    try:
        return run_gateway(gateway_settings_from_args(args), stop_on_signals())
    except GatewayError as error:
        print(f"spc-bridge: {error}", file=sys.stderr)
        return 2


def _bench(args: argparse.Namespace) -> int:
    from bridge.bench.run import main as bench

    return bench(args)


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
    access = broker.add_mutually_exclusive_group()
    access.add_argument("--users", type=Path, default=os.environ.get(USERS_ENV) or None, metavar="DIR",
                        help=f"users directory written by `spc-bridge user` (environment {USERS_ENV}): every "
                             "client logs in and gets the rights of its role")
    access.add_argument("--allow-anonymous", action="store_true",
                        help="no passwords and no ACL: anyone may do anything; for localhost only")
    broker.add_argument("--tls-cert", type=Path, metavar="FILE",
                        help="certificate chain (PEM) of the broker: also listen with TLS")
    broker.add_argument("--tls-key", type=Path, metavar="FILE", help="private key (PEM) of --tls-cert")
    broker.add_argument("--tls-ca", type=Path, metavar="FILE",
                        help="CA certificates (PEM) that client certificates must be signed by, when presented")
    broker.add_argument("--tls-port", type=int, default=8883, help="MQTT/TLS port (default 8883)")
    broker.add_argument("--wss-port", type=int, default=9443, help="MQTT-over-WebSocket/TLS port (default 9443)")
    broker.set_defaults(handler=_broker)

    user = commands.add_parser("user", help="add, remove or list the users of both brokers")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="add a user, or replace the user of that name")
    add.add_argument("name", help="user name (letters, digits, '_', '.', '-')")
    add.add_argument("--role", required=True, choices=ROLES, help="what the user may do (README, roles)")
    add.add_argument("--topic", dest="topics", action="append", default=[], metavar="FILTER",
                     help="a topic filter the gauge publishes on (gauges only; repeatable)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input instead of a prompt")
    add.set_defaults(handler=_user_add)
    remove = user_commands.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    remove.set_defaults(handler=_user_remove)
    listing = user_commands.add_parser("list", help="names, roles and topics (never passwords or hashes)")
    listing.set_defaults(handler=_user_list)
    for command in (add, remove, listing):
        command.add_argument("--dir", type=Path, default=os.environ.get(USERS_ENV) or None,
                             required=not os.environ.get(USERS_ENV), metavar="DIR",
                             help=f"users directory (environment {USERS_ENV})")

    demo = commands.add_parser("demo", help="embedded broker + bridge + SQLite + simulated gauges")
    _add_ports(demo)
    demo.add_argument("--db", default="sqlite:///spc-demo.db", help="database URL")
    demo.set_defaults(handler=_demo)

    tail = commands.add_parser("tail", help="print events as they arrive")
    tail.add_argument("filter", nargs="?", default="spc/#",
                      help="a characteristic id or an MQTT topic filter (default spc/#)")
    tail.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL")
    tail.add_argument("--ca-file", type=Path, default=None, metavar="FILE",
                      help="CA certificates (PEM) to verify an mqtts:// or wss:// broker")
    tail.set_defaults(handler=_tail)

    gateway = commands.add_parser("gateway", help="the seed's WebSocket protocol for dashboards, fed from MQTT")
    add_gateway_arguments(gateway)
    gateway.set_defaults(handler=_gateway)

    whole = commands.add_parser("bench", help="throughput, latency and memory of the bridge beside "
                                "a bare relay, on its own broker")
    add_bench_arguments(whole)
    whole.set_defaults(handler=_bench)

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
    except (ConfigError, UsersError, OSError) as error:
        print(f"spc-bridge: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
