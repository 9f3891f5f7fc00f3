"""``spc-bridge demo`` starts everything, produces violations and stops cleanly on Ctrl-C."""

import json
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.brokers import HOST, MqttProbe, free_port
from tests.processes import REPO, ChildProcess


@dataclass
class DemoBroker:
    """The demo's embedded broker as a handle for MqttProbe."""

    host: str
    port: int
    ws_port: int
    kind: str = "demo"


def test_demo_produces_violations_and_stops_cleanly(tmp_path: Path) -> None:
    """Violations arrive over TCP and WebSockets; SIGINT ends it with exit code 0 and 'offline'."""
    port, ws_port = free_port(), free_port()
    demo = ChildProcess(["demo", "--port", str(port), "--ws-port", str(ws_port),
                         "--db", f"sqlite:///{tmp_path / 'demo.db'}"],
                        tmp_path / "demo.log", "Ctrl-C stops it")
    demo.start()
    try:
        assert f"spc-bridge tail --broker mqtt://{HOST}:{port}" in demo.output()
        assert "(localhost only, no passwords)" in demo.output()  # anonymous, so bound to 127.0.0.1 only
        handle = DemoBroker(HOST, port, ws_port)
        with MqttProbe(handle, "tcp", user=None) as tcp, MqttProbe(handle, "websockets", user=None) as ws:
            for probe in (tcp, ws):
                probe.subscribe("spc/+/violation")
                probe.subscribe("spc/bridge/state")
            violations = tcp.wait_for("spc/2/violation", 1, timeout=60)
            assert violations, demo.output()
            first = json.loads(violations[0].payload)
            assert first["characteristic_id"] == 2 and first["rule_name"]
            assert [m.payload for m in ws.wait_for("spc/2/violation", 1, timeout=10)][0] == \
                violations[0].payload
            assert demo.stop(signal.SIGINT) == 0
            assert tcp.wait_for("spc/bridge/state", 2)[-1].payload == b"offline"
        assert "stopped" in demo.output()
    finally:
        demo.stop()


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    """A taken port: exit code 2 and one line that names the port."""
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "demo", "--port", str(port), "--ws-port",
             str(free_port()), "--db", f"sqlite:///{tmp_path / 'demo.db'}"],
            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and str(port) in result.stderr
    assert "already in use" in result.stderr
