"""A private NATS server (Debian's nats-server) with JetStream and its MQTT listener, as a test broker:
the test users of every role, each allowed everything but what a test denies the bridge."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.brokers import HOST, START_TIMEOUT, _BrokerUrl, free_port, terminate, wait_for_ports
from tests.credentials import ROLE_USERS, password

NATS_SERVER = shutil.which("nats-server") or "/usr/bin/nats-server"


def _subjects(topic_filter: str) -> list[str]:
    """The NATS subjects of an MQTT filter ending in ``/#``: NATS maps ``a/#`` to ``a`` and ``a.>``."""
    base = topic_filter.removesuffix("/#").replace("/", ".").replace("+", "*")
    return [base, f"{base}.>"]


class NatsProcess(_BrokerUrl):
    """nats-server on free loopback ports (MQTT and its own client port), restartable on the same
    ports and store in ``workdir``; its bridge user may not read the MQTT filters of ``deny`` (its
    SUBACK is then 0x80)."""

    kind = "nats"

    def __init__(self, workdir: Path, deny: Sequence[str] = ()) -> None:
        self.host = HOST
        self.port, self.client_port = free_port(), free_port()
        self.ws_port = self.tls_port = self.wss_port = 0  # MQTT on TCP only
        self.workdir = workdir
        self.conf_path = workdir / "nats.conf"
        self.log_path = workdir / "nats.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.write_config(deny)

    def write_config(self, deny: Sequence[str]) -> None:
        """Write the configuration, for the next :meth:`start` (nats-server 2.9.10 panics when it
        reloads the authorization of a configuration with MQTT on SIGHUP)."""
        users = []
        for user in ROLE_USERS:
            entry = {"user": user.name, "password": password(user.name)}
            if user.name == "bridge" and deny:
                entry["permissions"] = {"publish": {"allow": [">"]}, "subscribe": {
                    "allow": [">"], "deny": [s for f in deny for s in _subjects(f)]}}
            users.append(entry)
        # JSON is a subset of the NATS configuration syntax
        self.conf_path.write_text("\n".join([
            "server_name: spc-test", f"listen: {HOST}:{self.client_port}",
            f"jetstream {{ store_dir: {json.dumps(str(self.workdir / 'store'))} }}",
            f"authorization {{ users: {json.dumps(users)} }}", f"mqtt {{ listen: {HOST}:{self.port} }}", ""]))

    def start(self) -> None:
        """Start it and wait (bounded) until the MQTT port accepts connections."""
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen([NATS_SERVER, "-c", str(self.conf_path)], stdout=log,
                                    stderr=subprocess.STDOUT)
        self._proc = proc
        try:
            wait_for_ports(HOST, (self.client_port, self.port), START_TIMEOUT, lambda: proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}; nats-server log:\n{self.log_path.read_text(errors='replace')}") from None

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it has not exited within STOP_TIMEOUT."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)
