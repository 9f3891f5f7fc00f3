"""A private RabbitMQ node (Debian's rabbitmq-server) with its MQTT plugin, as a test broker: its own node
name, ports, data and logs, the test users of every role allowed everything on the default virtual host."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.brokers import HOST, _BrokerUrl, free_port
from tests.credentials import ROLE_USERS, password

# The server script itself: /usr/sbin/rabbitmq-server switches to the system's rabbitmq user, which
# cannot write to the test's directory, and reads the system node's rabbitmq-env.conf.
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
# A fresh node boots in 10 to 15 s here, 4 of them waiting for peers of its MQTT client-id registry.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# Logged once the definitions (users, permissions) are imported: the MQTT listener opens before that,
# when every login still fails.
READY_LINE = "Server startup complete"


def _password_hash(secret: str) -> str:
    """``secret`` as RabbitMQ's definitions store it (rabbit_password_hashing_sha256): base64 of a 4-byte
    salt followed by SHA-256 of the salt and the password."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + secret.encode()).digest()).decode()


def _definitions() -> dict[str, object]:
    """The default virtual host and the test users of every role, each allowed everything on it."""
    return {
        "vhosts": [{"name": "/"}],
        "users": [{"name": user.name, "password_hash": _password_hash(password(user.name)),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []} for user in ROLE_USERS],
        "permissions": [{"user": user.name, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
                        for user in ROLE_USERS],
    }


class RabbitMqProcess(_BrokerUrl):
    """rabbitmq-server in the foreground, a node of its own (``spc-test-<port>@localhost``) on free loopback
    ports: MQTT, AMQP and Erlang distribution (epmd, port 4369, is shared with any other node), with its
    configuration, data and logs in ``workdir``. ``prefetch``: the MQTT plugin's limit of unacknowledged
    deliveries per subscriber (RabbitMQ's default is 10)."""

    kind = "rabbitmq"

    def __init__(self, workdir: Path, prefetch: int = 1000) -> None:
        self.host = HOST
        self.port, self.amqp_port, self.dist_port = free_port(), free_port(), free_port()
        self.ws_port = self.tls_port = self.wss_port = 0  # MQTT on TCP only
        self.workdir = workdir
        self.node = f"spc-test-{self.port}@localhost"
        self.log_path = workdir / "rabbit.log"
        self.output_path = workdir / "rabbitmq-server.out"
        self._proc: subprocess.Popen[bytes] | None = None
        definitions = workdir / "definitions.json"
        definitions.write_text(json.dumps(_definitions()))
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (workdir / "rabbitmq-env.conf").write_text("")  # not the system node's
        (workdir / "rabbitmq.conf").write_text("\n".join([
            f"listeners.tcp.default = {HOST}:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = {HOST}:{self.port}",
            f"mqtt.prefetch = {prefetch}",
            "mqtt.allow_anonymous = false",
            f"load_definitions = {definitions}",
            "",
        ]))

    @property
    def pid(self) -> int | None:
        """The PID of the running rabbitmq-server script, None while stopped."""
        return self._proc.pid if self._proc is not None else None

    def _environment(self) -> dict[str, str]:
        """The environment of rabbitmq-server: everything of the node in ``workdir``, on loopback."""
        return dict(
            os.environ,
            HOME=str(self.workdir),  # the Erlang cookie is created there
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_CONF_ENV_FILE=str(self.workdir / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.workdir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.workdir / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.workdir / "log"),
            RABBITMQ_LOGS=str(self.log_path),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_ADDRESS=HOST,  # should the node have to start epmd itself
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )

    def start(self) -> None:
        """Start the node and wait (bounded) until it has imported its users and accepts MQTT logins."""
        if self._proc is not None:
            raise RuntimeError("rabbitmq is already running")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.output_path.open("ab") as output:
            # A session of its own: the script runs the Erlang VM as its child, which a stop must reach too.
            proc = subprocess.Popen([str(RABBITMQ_SERVER)], env=self._environment(), stdin=subprocess.DEVNULL,
                                    stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self._proc = proc
        deadline = time.monotonic() + START_TIMEOUT
        while READY_LINE not in self._log(offset):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rabbitmq-server not ready within {START_TIMEOUT} s; its output:\n"
                                   f"{self.output_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM the script by PID (it stops the node cleanly); SIGKILL to its session, the script and
        the Erlang VM, if it has not exited within STOP_TIMEOUT."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
                return
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the session started for it, whose id is its PID
        except ProcessLookupError:
            return
        proc.wait(STOP_TIMEOUT)

    def _log(self, offset: int) -> str:
        """What the node has logged since ``offset``."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")
