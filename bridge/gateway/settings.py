"""Settings of ``spc-bridge gateway``: options, their environment variables and their checks."""

import argparse
import os
import ssl
from dataclasses import dataclass
from math import isfinite
from pathlib import Path

from bridge.config import DEFAULT_BROKER, BrokerUrl, ConfigError, parse_broker_url

TOKEN_ENV = "SPC_BRIDGE_GATEWAY_TOKEN"
METRICS_PORT_ENV = "SPC_BRIDGE_GATEWAY_METRICS_PORT"
METRICS_HOST_ENV = "SPC_BRIDGE_GATEWAY_METRICS_HOST"
BROKER_ENV = "SPC_BRIDGE_BROKER"
DEFAULT_PORT = 8765
PATH = "/ws"


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """Where the gateway listens, which broker feeds it, its heartbeat and its tokens."""

    broker: BrokerUrl
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 90.0
    tokens: tuple[str, ...] = ()
    max_pending: int = 1000
    ca_file: Path | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: no metrics and health endpoint

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be 0..65535, got {self.port}")
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics-port: must be 1..65535, got {self.metrics_port}")
        for name in ("heartbeat_interval", "heartbeat_timeout"):
            value = getattr(self, name)
            if not (isfinite(value) and value > 0):
                raise ConfigError(f"{name.replace('_', '-')}: must be a number of seconds > 0, got {value}")
        if self.heartbeat_timeout < self.heartbeat_interval:
            raise ConfigError(
                f"heartbeat-timeout ({self.heartbeat_timeout:g} s) must be at least heartbeat-interval "
                f"({self.heartbeat_interval:g} s): clients ping once per interval"
            )
        if any(not token for token in self.tokens):
            raise ConfigError("token: must not be empty")
        if self.max_pending < 1:
            raise ConfigError(f"max-pending: must be at least 1, got {self.max_pending}")
        if self.ca_file is not None:
            if not self.broker.tls:
                raise ConfigError(f"ca-file: given, but the broker URL {self.broker} is not mqtts:// or wss://")
            if not self.ca_file.is_file():
                raise ConfigError(f"ca-file: {self.ca_file}: no such file")

    @property
    def auth(self) -> bool:
        """True when clients must give one of the tokens."""
        return bool(self.tokens)

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for an mqtts:// or wss:// broker, None otherwise."""
        return ssl.create_default_context(cafile=self.ca_file) if self.broker.tls else None


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``gateway``."""
    parser.add_argument(
        "--broker", default=os.environ.get(BROKER_ENV) or DEFAULT_BROKER, metavar="URL",
        help=f"broker URL with the dashboard's credentials, mqtt://user:password@host:1883, mqtts://, ws:// "
             f"or wss:// (default {DEFAULT_BROKER}; environment {BROKER_ENV})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--heartbeat-interval", type=float, default=30.0, metavar="SECONDS",
                        help="how often silent clients are looked for; clients ping this often (default 30)")
    parser.add_argument("--heartbeat-timeout", type=float, default=90.0, metavar="SECONDS",
                        help="a client that sends nothing for this long is dropped (default 90)")
    parser.add_argument(
        "--token", action="append", default=None, metavar="TOKEN",
        help=f"require ws://host:port{PATH}?token=TOKEN; repeat for several (environment {TOKEN_ENV}, "
             "comma-separated; none: no token needed)")
    parser.add_argument("--max-pending", type=int, default=1000, metavar="N",
                        help="messages waiting for one client before it is dropped as too slow (default 1000)")
    parser.add_argument("--ca-file", type=Path, default=None, metavar="FILE",
                        help="CA certificates (PEM) to verify an mqtts:// or wss:// broker")
    parser.add_argument("--metrics-port", type=int, default=os.environ.get(METRICS_PORT_ENV) or None, metavar="PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics and a health check at /healthz "
                             f"(200 or 503) (default: off; environment {METRICS_PORT_ENV})")
    parser.add_argument("--metrics-host", default=os.environ.get(METRICS_HOST_ENV) or "127.0.0.1", metavar="HOST",
                        help="address the metrics port listens on; 0.0.0.0 for every interface (default "
                             f"127.0.0.1; environment {METRICS_HOST_ENV})")


def gateway_settings_from_args(ns: argparse.Namespace) -> GatewaySettings:
    """The GatewaySettings of a namespace parsed with add_gateway_arguments (ConfigError if wrong)."""
    if ns.token is not None:
        tokens = tuple(ns.token)
    else:
        tokens = tuple(t.strip() for t in os.environ.get(TOKEN_ENV, "").split(",") if t.strip())
    return GatewaySettings(
        broker=parse_broker_url(ns.broker),
        host=ns.host,
        port=ns.port,
        heartbeat_interval=ns.heartbeat_interval,
        heartbeat_timeout=ns.heartbeat_timeout,
        tokens=tokens,
        max_pending=ns.max_pending,
        ca_file=ns.ca_file,
        metrics_host=ns.metrics_host,
        metrics_port=ns.metrics_port,
    )
