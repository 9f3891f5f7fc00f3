"""The ``spc-bridge`` command line: it only parses options, wires the parts together and reports failures.

An expected failure (a broker or database that refuses, a missing file, a taken port, the end of the
input at a prompt) ends a command with one line saying what failed and what to do, and exit code 2;
``-v`` adds its traceback.
"""

import argparse
import errno
import faulthandler
import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bridge import version
from bridge.bench.options import add_arguments as add_bench_arguments
from bridge.config import ConfigError, add_settings_arguments, settings_from_args
from bridge.dashboard.site import DEFAULT_BROKER_WS, HOST_PLACEHOLDER
from bridge.gateway.settings import add_gateway_arguments
from bridge.logs import FORMAT_ENV, FORMATS, configure, hide_secret, report_failure
from broker.roles import ROLES
from broker.users import BROKER_GROUP, UsersError

USERS_ENV = "SPC_BRIDGE_USERS"
FAILED = 2  # the exit code of an expected failure
INTERRUPTED = 130  # Ctrl-C where no graceful stop applies (a prompt): 128 + SIGINT


class Failure(Exception):
    """An expected failure of a command: the message says what failed and what to do."""


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
    from bridge.service.failover import Instance

    from bridge.store.failures import DatabaseUnusable

    settings = settings_from_args(args)
    hide_secret(settings.broker.password)
    hide_secret(make_url(settings.db_url).password)
    stop = stop_on_signals()
    try:
        # the bridges it starts log a summary of their settings as they start
        Instance(settings).run(stop)
    except DatabaseUnusable as error:
        raise Failure(str(error)) from error
    return 0


def _broker(args: argparse.Namespace) -> int:
    from broker.embedded import BrokerStartError, EmbeddedBroker, TlsListeners, run_broker

    users = None if args.allow_anonymous else args.users
    if users is None and not args.allow_anonymous:
        raise Failure(f"broker: give --users DIR (or set {USERS_ENV}; create users with `spc-bridge user add`), "
                      "or --allow-anonymous for a broker open to anyone on this machine")
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_ca is not None and args.tls_cert is None):
        raise Failure("broker: --tls-cert and --tls-key go together, and --tls-ca needs them")
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
        raise Failure(str(error)) from error
    return 0


def _read_password(name: str, from_stdin: bool) -> str:
    """The new password: one line of standard input, or typed twice at a prompt that does not echo it."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsersError("no password on standard input: give it as the first line")
        return line.rstrip("\r\n")
    try:
        password = getpass.getpass(f"password for {name}: ")
        again = getpass.getpass("the same again: ")
    except EOFError:  # Ctrl-D, or no terminal and nothing piped in
        print(file=sys.stderr)  # end the prompt's line
        raise UsersError("no password given (the input ended at the prompt): type it twice, or pipe it in "
                         "with --password-stdin") from None
    if again != password:
        raise UsersError("the two passwords differ")
    return password


def _user_add(args: argparse.Namespace) -> int:
    from broker.users import User, UserDirectory

    # Checked before the password is asked for.
    user = User(args.name, args.role, tuple(args.topics), tuple(args.edge_nodes))
    replaced = UserDirectory(args.dir, args.group).add(user, _read_password(user.name, args.password_stdin))
    print(f"user {user.name} ({user.role}) {'replaced' if replaced else 'added'} in {args.dir}; "
          "reload Mosquitto (kill -HUP) and restart `spc-bridge broker` to apply")
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    from broker.users import UserDirectory

    UserDirectory(args.dir, args.group).remove(args.name)
    print(f"user {args.name} removed from {args.dir}; reload Mosquitto (kill -HUP) and restart "
          "`spc-bridge broker` to apply")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    from broker.users import UserDirectory

    rows = [("NAME", "ROLE", "PASSWORD", "TOPICS")]
    rows += [(user.name, user.role, "set" if has_password else "none", " ".join(user.given))
             for user, has_password in UserDirectory(args.dir).with_passwords()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print(("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3]).rstrip())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo
    from bridge.store.failures import DatabaseUnusable
    from broker.embedded import BrokerStartError

    try:
        return run_demo(args.port, args.ws_port, args.db, stop_on_signals(), args.seed, args.dashboard_port)
    except (BrokerStartError, DatabaseUnusable) as error:
        raise Failure(str(error)) from error


def _read_database(url: str, read: Callable[[Any], str]) -> int:
    """Print what ``read`` makes of the database at ``url``, or fail with what is wrong with it."""
    import sqlalchemy as sa
    from sqlalchemy.exc import DBAPIError

    from bridge.store.failures import DatabaseUnusable, open_engine, permanent, shown

    try:
        engine = open_engine(url)
    except DatabaseUnusable as error:
        raise Failure(str(error)) from error
    if engine.dialect.name == "sqlite" and not Path(engine.url.database or "").is_file():
        raise Failure(f"db: {shown(url)}: no such file")  # SQLite would create an empty one
    try:
        if not sa.inspect(engine).has_table("audit"):
            raise Failure(f"db: {shown(url)}: no spc-bridge tables there: give the --db of `spc-bridge run`")
        text = read(engine)
    except DBAPIError as error:
        raise Failure(permanent(engine, error) or f"db: {shown(url)}: {' '.join(str(error.orig).split())}") from error
    finally:
        engine.dispose()
    if text:
        print(text)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from bridge.audit_report import audit_text, parse_instant

    try:
        since = parse_instant(args.since) if args.since is not None else None
    except ValueError:
        raise Failure(f"--since {args.since!r}: give an ISO 8601 date or instant, e.g. 2026-12-01 or "
                      "2026-12-01T08:00:00Z") from None
    return _read_database(args.db, lambda engine: audit_text(engine, args.characteristic, since))


def _export(args: argparse.Namespace) -> int:
    from bridge.export import characteristics_toml

    return _read_database(args.db, characteristics_toml)


def _tail(args: argparse.Namespace) -> int:
    from bridge.config import parse_broker_url
    from bridge.tail import TailError, tail

    hide_secret(parse_broker_url(args.broker).password)
    try:
        return tail(args.broker, args.filter, stop_on_signals(), args.ca_file)
    except TailError as error:
        raise Failure(str(error)) from error


def _gateway(args: argparse.Namespace) -> int:
    from bridge.gateway.server import GatewayError, run_gateway
    from bridge.gateway.settings import gateway_settings_from_args

    settings = gateway_settings_from_args(args)
    hide_secret(settings.broker.password)
    for token in settings.tokens:
        hide_secret(token)
    try:
        return run_gateway(settings, stop_on_signals())
    except GatewayError as error:
        raise Failure(str(error)) from error


def _dashboard(args: argparse.Namespace) -> int:
    from bridge.dashboard.server import run_dashboard
    from bridge.dashboard.site import export

    if args.export is not None:
        written = export(args.export, args.broker_ws if args.broker_ws != DEFAULT_BROKER_WS else None)
        print(f"wrote {len(written)} files to {args.export}")
        return 0
    return run_dashboard(args.host, args.port, args.broker_ws, stop_on_signals())


def _bench(args: argparse.Namespace) -> int:
    from bridge.bench.run import main as bench

    return bench(args)


_BENCH_CHART_NAMES = {
    "imr": "individuals chart, all 8 Nelson rules",
    "cusum": "tabular CUSUM of individuals (k = 0.5, h = 5)",
    "ewma": "EWMA of individuals (lambda = 0.2, L = 3)",
}


def _bench_engine(args: argparse.Namespace) -> int:
    from bridge.spc.bench import bench_engine

    result = bench_engine(args.points, chart=args.chart)
    if args.json:
        print(json.dumps({
            "chart": args.chart, "points": result.points, "seconds": round(result.seconds, 3),
            "evaluations_per_second": round(result.rate), "violations": result.violations,
        }))
    else:
        chart = _BENCH_CHART_NAMES[args.chart]
        print(f"SPC engine, {chart}, one core:\n"
              f"  {result.points:,} points in {result.seconds:.2f} s = "
              f"{result.rate:,.0f} evaluations/s ({result.violations} violations raised)")
    return 0


def _add_ports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=1883, help="MQTT/TCP port (default 1883)")
    parser.add_argument("--ws-port", type=int, default=9001,
                        help="MQTT-over-WebSocket port (default 9001)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="spc-bridge", description="Statistical process control between shop-floor MQTT gauges and "
        "SCADA or dashboards: readings in, control charts, violations and capability out.",
        epilog="Each command has its own --help, e.g. spc-bridge run --help. README.md, in the repository and "
        "on the package's page, explains the set-up, the configuration, security and operations.")
    parser.add_argument("--version", action="version", version=f"spc-bridge {version()}")
    _add_global_options(parser, defaults=True)
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the bridge against a broker", description="Run the bridge: "
                              "chart the gauges' readings from the broker, store them in the database and "
                              "publish samples, limits and violations.")
    add_settings_arguments(run)
    run.set_defaults(handler=_run)

    broker = commands.add_parser("broker", help="run the embedded MQTT broker alone", description="Run the "
                                 "embedded MQTT broker alone, with the users of `spc-bridge user`: for trials and "
                                 "small sites (Mosquitto, with the repository's mosquitto.conf, for production).")
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

    user = commands.add_parser("user", help="add, remove or list the users of both brokers",
                               description="Add, remove or list the broker users: one directory holds them for "
                               "both Mosquitto and the embedded broker.")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="add a user, or replace the user of that name")
    add.add_argument("name", help="user name (letters, digits, '_', '.', '-')")
    add.add_argument("--role", required=True, choices=ROLES, help="what the user may do (README, roles)")
    add.add_argument("--topic", dest="topics", action="append", default=[], metavar="FILTER",
                     help="a topic filter the gauge publishes on (gauges only; repeatable)")
    add.add_argument("--edge-node", dest="edge_nodes", action="append", default=[], metavar="GROUP/NODE",
                     help="a Sparkplug B edge node the edge speaks for: its group id and edge node id (edges only; "
                          "repeatable)")
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
    for command in (add, remove):
        command.add_argument("--group", metavar="NAME",
                             help=f"give the files to group NAME, with read access: the group the broker runs as "
                                  f"(default: as root, {BROKER_GROUP} when it exists, for new files; a file "
                                  "replaced keeps its owner and mode)")

    trail = commands.add_parser("audit", help="print the audit trail: who changed what, when and why",
                                description="Print the audit trail of a bridge's database, oldest first: every "
                                "change of a characteristic, limit set, rules or reason codes and every "
                                "acknowledgement, with the user, the time, the old and new values and the reason.")
    trail.add_argument("--db", required=True, metavar="URL", help="the database URL of `spc-bridge run`")
    trail.add_argument("--characteristic", type=int, metavar="ID", help="only this characteristic's entries")
    trail.add_argument("--since", metavar="T", help="only entries from this ISO 8601 date or instant on (UTC "
                                                    "unless it names an offset)")
    trail.set_defaults(handler=_audit)

    catalog = commands.add_parser("characteristics", help="the characteristics kept in the database",
                                  description="The characteristics the database holds, the one source of truth "
                                  "(`spc-bridge run --config` applies a file to them).")
    catalog_commands = catalog.add_subparsers(dest="characteristics_command", required=True)
    export = catalog_commands.add_parser("export", help="write the current characteristics as a TOML file",
                                         description="Write the current characteristics, ingest roots and reason "
                                         "codes to standard output as a characteristics file.")
    export.add_argument("--db", required=True, metavar="URL", help="the database URL of `spc-bridge run`")
    export.set_defaults(handler=_export)

    demo = commands.add_parser("demo", help="embedded broker + bridge + SQLite + simulated gauges",
                               description="Try it in one command: an embedded broker, the bridge, a SQLite "
                               "database and three simulated gauges on this machine.")
    _add_ports(demo)
    demo.add_argument("--dashboard-port", type=int, default=8080, help="HTTP port of the dashboard (default 8080)")
    demo.add_argument("--db", default=None, metavar="URL",
                      help="database URL to keep the data in (default: a new SQLite file in a temporary "
                           "folder, deleted at exit)")
    demo.add_argument("--seed", type=int, default=None, metavar="N",
                      help="seed of the simulated gauges: the same seed gives the same readings "
                           "(default: the same seed every run)")
    demo.set_defaults(handler=_demo)

    tail = commands.add_parser("tail", help="print events as they arrive", description="Print the bridge's "
                               "events (samples, limits, violations, errors) as they arrive; a broker that goes "
                               "away is reconnected to.")
    tail.add_argument("filter", nargs="?", default="spc/#",
                      help="a characteristic id or an MQTT topic filter (default spc/#)")
    tail.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL",
                      help="broker URL with a dashboard's credentials, mqtt://user:password@host:1883, mqtts://, "
                           "ws:// or wss:// (default mqtt://127.0.0.1:1883)")
    tail.add_argument("--ca-file", type=Path, default=None, metavar="FILE",
                      help="CA certificates (PEM) to verify an mqtts:// or wss:// broker")
    tail.set_defaults(handler=_tail)

    gateway = commands.add_parser("gateway", help="serve dashboards the OpenSPC WebSocket protocol, fed from MQTT",
                                  description="Serve dashboards over the OpenSPC WebSocket protocol, fed from the "
                                  "events on the broker.")
    add_gateway_arguments(gateway)
    gateway.set_defaults(handler=_gateway)

    dashboard = commands.add_parser("dashboard", help="serve the browser dashboard (it talks MQTT over WebSockets to "
                                    "the broker)", description="Serve the dashboard's pages. The page logs in to "
                                    "the broker's WebSocket listener with the user's own name and password.")
    dashboard.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    dashboard.add_argument("--broker-ws", default=DEFAULT_BROKER_WS, metavar="URL",
                           help="the broker's WebSocket URL the page connects to, ws:// or wss:// (default "
                                f"{DEFAULT_BROKER_WS}: {HOST_PLACEHOLDER} is the host the page came from)")
    dashboard.add_argument("--export", type=Path, default=None, metavar="DIR",
                           help="write the files into DIR and exit (for Mosquitto's http_dir; without "
                                "--broker-ws the page connects to the listener that served it)")
    dashboard.set_defaults(handler=_dashboard)

    whole = commands.add_parser("bench", help="throughput, latency and memory of the bridge beside "
                                "a bare relay, on its own broker", description="Measure the bridge's throughput, "
                                "latency and memory beside a bare relay, on a broker of its own.")
    add_bench_arguments(whole)
    whole.set_defaults(handler=_bench)

    bench = commands.add_parser("bench-engine", help="micro-benchmark of the SPC engine",
                                description="Measure how fast the SPC engine evaluates points, on one core.")
    bench.add_argument("--points", type=int, default=1_000_000, help="points to evaluate")
    bench.add_argument("--chart", choices=tuple(_BENCH_CHART_NAMES), default="imr",
                       help="the chart to evaluate (default imr)")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.set_defaults(handler=_bench_engine)
    for command in _commands(parser):
        _add_global_options(command, defaults=False)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """-v and --log-format, given before or after the command (a command's copy sets nothing unless given)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=False if defaults else argparse.SUPPRESS,
                        help="debug logging, and the traceback of a failure")
    parser.add_argument("--log-format", choices=FORMATS,
                        default=(os.environ.get(FORMAT_ENV) or "text") if defaults else argparse.SUPPRESS,
                        help=f"text, or json: one object a line for log shippers (environment {FORMAT_ENV})")


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command's parser, ``user add`` and the other sub-commands included."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found += [command, *_commands(command)]
    return found


def _os_problem(error: OSError) -> str:
    """What a failed system call means, naming its file."""
    where = f"{error.filename}: " if error.filename else ""
    if error.errno == errno.EADDRINUSE:
        return f"{where}a port is already in use ({error.strerror}): stop what listens on it, or choose another port"
    if isinstance(error, FileNotFoundError):
        return f"{where}no such file or folder"
    if isinstance(error, PermissionError):
        return f"{where}permission denied: run as a user that may use it, or change its owner or mode"
    return f"{where}{error.strerror or error}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_format not in FORMATS:
        parser.error(f"{FORMAT_ENV}={args.log_format!r}: give one of {', '.join(FORMATS)}")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>` shows every thread
    configure(args.verbose, args.log_format)
    try:
        return int(args.handler(args))
    except (Failure, ConfigError, UsersError) as error:
        report_failure(str(error), error.__cause__ or error, args.verbose)
    except OSError as error:
        report_failure(_os_problem(error), error, args.verbose)
    except KeyboardInterrupt as error:
        report_failure("interrupted", error, args.verbose)
        return INTERRUPTED
    return FAILED


if __name__ == "__main__":
    sys.exit(main())
