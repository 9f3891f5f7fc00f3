"""Dashboards in a real browser: headless Chromium (Debian's) driven by npm playwright-core (drive.mjs).

mqtt.html uses MQTT.js over each broker's WebSocket listener: retained limits, live samples, and an operator
acknowledging a violation. openspc.html speaks the OpenSPC WebSocket protocol to ``spc-bridge gateway`` with the browser's
own WebSocket. The pages report what they received and what they show; the assertions are here.
Needs /usr/bin/chromium and ``npm ci`` in this directory (``.ci/run`` does both).
"""

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bridge.contract import (
    ACK_COMMAND, ack_topic, limits_topic, request_topic, response_topic, sample_topic, violation_topic,
)
from tests.brokers import HOST, BrokerHandle, EmbeddedBrokerThread, free_port, terminate
from tests.credentials import password
from tests.dashboards import (
    BORE, BORE_TOPIC, SHAFT, SHAFT_TOPIC, EventWatcher, GatewayProcess, acknowledge, gauge_readings, start_bridge,
)

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGE_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

MISSING = [what for what, present in (
    ("node", shutil.which("node") is not None), (CHROMIUM, Path(CHROMIUM).exists()),
    ("npm package mqtt", (HERE / "node_modules" / "mqtt").is_dir()),
    ("npm package playwright-core", (HERE / "node_modules" / "playwright-core").is_dir()),
) if not present]


@pytest.fixture(autouse=True)
def browser_tools() -> None:
    """Fail (never skip) when the browser tools are missing: `bash .ci/run` installs them."""
    if MISSING:
        pytest.fail(f"missing {', '.join(MISSING)}: run `bash .ci/run` (or `npm ci` in tests/browser)")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def pages() -> Iterator[str]:
    """An HTTP server on loopback for this directory (the pages and node_modules); its base URL."""
    server = ThreadingHTTPServer((HOST, free_port()), partial(_QuietHandler, directory=str(HERE)))
    thread = threading.Thread(target=server.serve_forever, name="pages", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT)


class Browser:
    """``node drive.mjs``: one page in headless Chromium; its reports, one JSON object per stdout line."""

    def __init__(self, url: str, *options: str) -> None:
        self.stderr: list[str] = []
        self._reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self._received: list[dict[str, Any]] = []  # in order of arrival
        self.proc = subprocess.Popen(
            ["node", "drive.mjs", url, "--timeout", str(int(PAGE_TIMEOUT * 1000)), *options], cwd=HERE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, CHROMIUM=CHROMIUM))
        threading.Thread(target=self._read_reports, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def expect(self, event: str, timeout: float = PAGE_TIMEOUT + 10) -> dict[str, Any]:
        """Wait (bounded) for the report ``event``, which may have come already (the page can be done before
        the driver's click returns); fail on any report of a problem first."""
        deadline = time.monotonic() + timeout
        while True:
            for report in self._received:
                if report["event"] in ("failed", "timeout", "page-error", "driver-error"):
                    raise AssertionError(f"waiting for {event!r}: {report}\n{''.join(self.stderr)[-3000:]}")
                if report["event"] == event:
                    return report
            try:
                self._received.append(self._reports.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise TimeoutError(f"no {event!r} from the page within {timeout} s; "
                                   f"browser said:\n{''.join(self.stderr)[-3000:]}") from None

    def stop(self) -> None:
        """End the driver by PID: it closes Chromium itself; SIGKILL if it has not exited in time."""
        terminate(self.proc)

    def _read_reports(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._reports.put(json.loads(line))
            except json.JSONDecodeError:  # not a report (a library's notice): kept with what the browser said
                self.stderr.append(f"stdout: {line}")

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)


def page_url(base: str, page: str, config: dict[str, Any]) -> str:
    """A test page with its configuration as JSON in the fragment."""
    return f"{base}/{page}#{quote(json.dumps(config))}"


@pytest.mark.serial
def test_mqtt_dashboard_in_chromium(broker: BrokerHandle, tmp_path: Path, pages: str) -> None:
    """MQTT.js over the broker's WebSocket listener, logged in as the operator: the retained limits, three live
    samples, a violation acknowledged with the page's button, the ack event and the bridge's response."""
    bridge = start_bridge(broker, tmp_path)
    user = "operator"
    config = {
        "url": f"ws://{broker.host}:{broker.ws_port}/mqtt", "username": user, "password": password(user),
        "characteristic_id": SHAFT, "samples": 3,
        "topics": {
            "limits": limits_topic(SHAFT), "sample": sample_topic(SHAFT), "violation": violation_topic(SHAFT),
            "ack": ack_topic(SHAFT), "ack_request": request_topic(user, ACK_COMMAND),
            "ack_response": response_topic(user, ACK_COMMAND),
        },
    }
    browser = Browser(page_url(pages, "mqtt.html", config), "--ack", "Tool changed")
    try:
        browser.expect("ready")
        gauge_readings(broker, SHAFT_TOPIC, 10.0, 10.5, 14.0)
        clicked = browser.expect("clicked")
        done = browser.expect("done")
    finally:
        browser.stop()
        bridge.stop()

    seen, shown = done["seen"], done["shown"]
    assert seen["limits"]["phase"] == "monitoring"
    assert (seen["limits"]["center"], seen["limits"]["ucl"], seen["limits"]["lcl"]) == (10.0, 13.0, 7.0)
    assert shown["limits"] == "monitoring: center 10, UCL 13, LCL 7"
    assert [(row[1], row[2]) for row in shown["samples"]] == [
        ("10", "zone_c_upper"), ("10.5", "zone_c_upper"), ("14", "beyond_ucl")]
    [violation] = seen["violations"]
    assert violation["violation_id"] == clicked["violation_id"]
    assert violation["sample_id"] == seen["samples"][2]["sample_id"] and violation["rule_id"] == 1
    assert seen["acks"] == [{
        "violation_id": violation["violation_id"], "characteristic_id": SHAFT, "acknowledged": True,
        "ack_user": user, "ack_reason": "Tool changed", "ack_time": seen["acks"][0]["ack_time"],
        "reason_code": "tool_wear", "assignable_cause": False}]
    assert seen["responses"][0]["status"] == "ok" and seen["responses"][0]["transaction"] == violation["violation_id"]
    assert shown["violations"][0].endswith("acknowledged by operator: Tool changed")
    assert shown["response"] == "acknowledged"


@pytest.mark.serial
def test_openspc_protocol_in_chromium(embedded_broker: EmbeddedBrokerThread, tmp_path: Path, pages: str) -> None:
    """The browser's WebSocket against the gateway: refused without the token, then subscribe [1], ping/pong,
    and sample, violation and ack_update of 1 only."""
    bridge = start_bridge(embedded_broker, tmp_path)
    gateway = GatewayProcess(tmp_path, embedded_broker, "--token", "browser-token")
    gateway.start()
    config = {"url": gateway.url(), "token": "browser-token", "characteristic_ids": [SHAFT],
              "expect": {"sample": 2, "violation": 1, "ack_update": 1}}
    browser = Browser(page_url(pages, "openspc.html", config))
    try:
        browser.expect("ready")
        with EventWatcher(embedded_broker, BORE) as bore, EventWatcher(embedded_broker, SHAFT) as shaft:
            gauge_readings(embedded_broker, BORE_TOPIC, 0.5)
            bore.violations(1)
            gauge_readings(embedded_broker, SHAFT_TOPIC, 10.0, 14.0)
            [violation] = shaft.violations(1)
        assert acknowledge(embedded_broker, violation["violation_id"], "Process adjusted")["status"] == "ok"
        done = browser.expect("done")
    finally:
        browser.stop()
        assert gateway.stop() == 0
        bridge.stop()

    assert done["refusal"] == {"opened": False, "code": 1006}
    received = done["received"]
    assert [m["type"] for m in received] == ["subscribed", "pong", "sample", "sample", "violation", "ack_update"]
    assert received[0] == {"type": "subscribed", "characteristic_ids": [SHAFT]} and received[1] == {"type": "pong"}
    assert all(m["payload"]["characteristic_id"] == SHAFT for m in received[2:])
    vid = violation["violation_id"]
    assert done["shown"][2:] == [f"violation {vid}: {violation['rule_name']} (CRITICAL)",
                                 f"violation {vid} acknowledged by operator: Process adjusted"]
    assert [text.split(": ")[1] for text in done["shown"][:2]] == ["10 (zone_c_upper)", "14 (beyond_ucl)"]
    assert "refused ('127.0.0.1'" in gateway.output()
