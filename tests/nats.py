"""Private NATS servers (Debian's nats-server) with JetStream and their MQTT listener, as test brokers:
one server alone, or a three-node JetStream cluster; the test users of every role, each allowed
everything but what a test denies the bridge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.brokers import (
    HOST, START_TIMEOUT, STOP_TIMEOUT, ConnectionRefused, MqttProbe, _BrokerUrl, free_port, terminate,
    wait_for_ports,
)
from tests.credentials import ROLE_USERS, password

NATS_SERVER = shutil.which("nats-server") or "/usr/bin/nats-server"
# How long a cluster may take to elect its JetStream meta leader and accept MQTT subscriptions
CLUSTER_READY_TIMEOUT = 30.0
LEADER_TIMEOUT = 15.0  # for a JetStream stream or consumer to elect a leader
API_TIMEOUT = 2.0  # for an answer to a JetStream API request (none comes while there is no leader)
MQTT_STREAM = "$MQTT_msgs"  # the stream holding every QoS 1 message published over MQTT
MQTT_STREAMS = (MQTT_STREAM, "$MQTT_sess", "$MQTT_rmsgs")  # and those of the sessions and retained messages

_T = TypeVar("_T")


def _subjects(topic_filter: str) -> list[str]:
    """The NATS subjects of an MQTT filter ending in ``/#``: NATS maps ``a/#`` to ``a`` and ``a.>``."""
    base = topic_filter.removesuffix("/#").replace("/", ".").replace("+", "*")
    return [base, f"{base}.>"]


def _users(deny: Sequence[str]) -> list[dict[str, object]]:
    """The test users of every role; the bridge's may not subscribe to the MQTT filters of ``deny``."""
    users: list[dict[str, object]] = []
    for user in ROLE_USERS:
        entry: dict[str, object] = {"user": user.name, "password": password(user.name)}
        if user.name == "bridge" and deny:
            entry["permissions"] = {"publish": {"allow": [">"]}, "subscribe": {
                "allow": [">"], "deny": [s for f in deny for s in _subjects(f)]}}
        users.append(entry)
    return users


class NatsProcess(_BrokerUrl):
    """nats-server on free loopback ports (MQTT and its own client port), restartable on the same
    ports and store in ``workdir``; its bridge user may not read the MQTT filters of ``deny`` (its
    SUBACK is then 0x80). ``server_name`` names it in a cluster; ``cluster``, the configuration's
    ``cluster`` block, also opens the monitoring endpoint on ``monitor_port``; ``mqtt``: more options of
    its ``mqtt`` block."""

    kind = "nats"

    def __init__(self, workdir: Path, deny: Sequence[str] = (), *, server_name: str = "spc-test",
                 cluster: Mapping[str, object] | None = None, mqtt: Mapping[str, object] | None = None) -> None:
        self.host = HOST
        self.port, self.client_port = free_port(), free_port()
        self.ws_port = self.tls_port = self.wss_port = 0  # MQTT on TCP only
        self.workdir = workdir
        self.conf_path = workdir / "nats.conf"
        self.log_path = workdir / "nats.log"
        self.server_name = server_name
        self._cluster = dict(cluster or {})
        self.monitor_port = free_port() if cluster else 0
        self._mqtt = dict(mqtt or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self.write_config(deny)

    @property
    def pid(self) -> int | None:
        """The running server's PID, None while stopped."""
        return self._proc.pid if self._proc is not None else None

    def write_config(self, deny: Sequence[str]) -> None:
        """Write the configuration, for the next :meth:`start` (nats-server 2.9.10 panics when it
        reloads the authorization of a configuration with MQTT on SIGHUP)."""
        blocks: dict[str, object] = {
            "server_name": self.server_name, "listen": f"{HOST}:{self.client_port}",
            "jetstream": {"store_dir": str(self.workdir / "store")},
            "authorization": {"users": _users(deny)},
            "mqtt": {"listen": f"{HOST}:{self.port}", **self._mqtt},
        }
        if self._cluster:
            blocks["cluster"] = self._cluster
            blocks["http"] = f"{HOST}:{self.monitor_port}"  # the monitoring endpoint (/jsz: who leads)
        # JSON is a subset of the NATS configuration syntax
        self.conf_path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in blocks.items()))

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

    def kill(self) -> None:
        """kill -9 by PID, as a crash or a power cut would end it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it has not exited within STOP_TIMEOUT."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)


class NatsCluster:
    """``size`` nats-server nodes in one cluster (full mesh of routes) on free loopback ports, each with
    its own JetStream store in ``workdir``/node-N, the MQTT streams replicated on every node (R3 for
    three). A node stopped or killed restarts on the same ports and store."""

    def __init__(self, workdir: Path, size: int = 3, mqtt: Mapping[str, object] | None = None) -> None:
        route_ports = [free_port() for _ in range(size)]
        self.nodes: list[NatsProcess] = []
        for index, route_port in enumerate(route_ports):
            node_dir = workdir / f"node-{index + 1}"
            node_dir.mkdir(parents=True, exist_ok=True)
            routes = [f"nats-route://{HOST}:{p}" for p in route_ports if p != route_port]
            self.nodes.append(NatsProcess(
                node_dir, server_name=f"spc-test-{index + 1}",
                cluster={"name": "spc-test", "listen": f"{HOST}:{route_port}", "routes": routes},
                mqtt={"stream_replicas": size, **(mqtt or {})}))

    def start(self) -> None:
        """Start every node, then wait (bounded) until each is ready for MQTT sessions."""
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self.wait_ready(node)

    def restart(self, node: NatsProcess) -> None:
        """Start a stopped or killed node again and wait (bounded) until it is ready for MQTT sessions."""
        node.start()
        self.wait_ready(node)

    def stop(self) -> None:
        """Stop every node by PID (SIGTERM, SIGKILL after STOP_TIMEOUT)."""
        for node in self.nodes:
            node.stop()

    def wait_ready(self, node: NatsProcess) -> None:
        """Wait (bounded) until JetStream answers through ``node`` (the cluster has a meta leader), then
        until an MQTT client can connect to it and subscribe at QoS 1 (the MQTT streams exist)."""
        # Polled first because an MQTT client connecting with no meta leader waits 4 s to be refused.
        _poll(lambda: self._ask("$JS.API.INFO", via=node, timeout=0.5), CLUSTER_READY_TIMEOUT,
              f"{node.server_name}: no JetStream")

        def subscribed() -> bool | None:
            try:
                with MqttProbe(node, timeout=5.0) as probe:  # beyond NATS's 4 s for its own requests
                    probe.subscribe("spc/cluster/ready", qos=1)
                    return True
            except (ConnectionRefused, TimeoutError, PermissionError, OSError):
                return None

        _poll(subscribed, CLUSTER_READY_TIMEOUT, f"{node.server_name}: no MQTT subscription at QoS 1")

    def node(self, server_name: str) -> NatsProcess:
        """The node called ``server_name``."""
        return next(node for node in self.nodes if node.server_name == server_name)

    def meta_leader(self) -> NatsProcess:
        """The node leading the cluster's JetStream metadata (consumers are created through it), as the
        monitoring endpoint of a running node says."""
        node = next(n for n in self.nodes if n.pid is not None)
        with urllib.request.urlopen(f"http://{HOST}:{node.monitor_port}/jsz", timeout=API_TIMEOUT) as answer:
            return self.node(json.load(answer)["meta_cluster"]["leader"])

    def stream_leader(self, stream: str = MQTT_STREAM) -> NatsProcess:
        """The node leading JetStream stream ``stream`` (waits, bounded, while it elects one)."""
        return self.node(self._leader(f"$JS.API.STREAM.INFO.{stream}"))

    def move_leaders_off(self, node: NatsProcess) -> None:
        """Make ``node`` lead none of the MQTT streams nor any of their consumers (every subscription at
        QoS 1 has one): each it leads steps down and another node is elected (waits, bounded). Killing
        ``node`` then loses no acknowledgement, fails no publish in flight and stalls no session."""
        for stream in MQTT_STREAMS:
            consumers = _poll(lambda: self._ask(f"$JS.API.CONSUMER.LIST.{stream}"), LEADER_TIMEOUT,
                              f"{stream}: no list of consumers")["consumers"]
            for kind, name in [("STREAM", stream)] + [("CONSUMER", f"{stream}.{c['name']}") for c in consumers]:
                info = f"$JS.API.{kind}.INFO.{name}"
                if self._leader(info) == node.server_name:
                    self._ask(f"$JS.API.{kind}.LEADER.STEPDOWN.{name}")
                    self._leader(info, avoid=node.server_name)

    def wait_delivered(self, timeout: float, stream: str = MQTT_STREAM) -> None:
        """Wait (bounded) until every consumer of ``stream`` has been sent all its messages and has
        acknowledged them: nothing more will be delivered, not even again."""
        def drained() -> bool | None:
            answer = self._ask(f"$JS.API.CONSUMER.LIST.{stream}")
            if answer is None or answer.get("missing"):  # "missing": consumers that did not answer in time
                return None
            return all(c["num_pending"] == 0 and c["num_ack_pending"] == 0 for c in answer["consumers"]) or None

        _poll(drained, timeout, f"{stream}: messages not delivered or not acknowledged")

    def _leader(self, info_subject: str, avoid: str = "") -> str:
        """The server name of the leader in the answer to a JetStream info request, once there is one
        and it is not ``avoid`` (waits, bounded)."""
        def leader() -> str | None:
            name = str((self._ask(info_subject) or {}).get("cluster", {}).get("leader", ""))
            return name if name and name != avoid else None

        return _poll(leader, LEADER_TIMEOUT, f"{info_subject}: no leader" + (f" but {avoid}" if avoid else ""))

    def _ask(self, subject: str, via: NatsProcess | None = None,
             timeout: float = API_TIMEOUT) -> dict[str, Any] | None:
        """A JetStream API request as the admin user through node ``via`` (else any running node), over
        the NATS client protocol, which is text: the JSON answer; None if it is an error or none comes
        within ``timeout`` or the node is not there to ask (JetStream answers nothing while it has no leader
        to answer)."""
        node = via or next(n for n in self.nodes if n.pid is not None)
        connect = json.dumps({"user": "admin", "pass": password("admin"), "verbose": False})
        try:
            with socket.create_connection((HOST, node.client_port), timeout=timeout) as sock, \
                    sock.makefile("rb") as reader:
                reader.readline()  # the server's INFO
                sock.sendall(f"CONNECT {connect}\r\nSUB _INBOX.test 1\r\nPUB {subject} _INBOX.test 0\r\n\r\n"
                             .encode())
                while not (line := reader.readline()).startswith(b"MSG "):
                    if not line or line.startswith(b"-ERR"):
                        raise ConnectionError(f"{node.server_name} refused {subject}: {line!r}")
                    if line.startswith(b"PING"):
                        sock.sendall(b"PONG\r\n")
                answer: dict[str, Any] = json.loads(reader.read(int(line.split()[-1]) + 2))
        except (TimeoutError, ConnectionRefusedError, ConnectionResetError):  # a node restarting, an election
            return None
        return None if "error" in answer else answer


def _poll(attempt: Callable[[], _T | None], timeout: float, what: str) -> _T:
    """Call ``attempt`` every 0.2 s until it returns something but None, and return that; TimeoutError
    (saying ``what``) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (result := attempt()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.2)
    return result
