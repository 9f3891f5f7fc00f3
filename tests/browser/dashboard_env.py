"""What the dashboard's browser tests and its benchmark share: ``spc-bridge dashboard`` as a real process, the
page's login, the in-page recorders, and where screenshots go."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt

from tests.brokers import Listeners, MqttProbe, free_port
from tests.browser.pilot import Pilot, PilotError
from tests.credentials import password
from tests.processes import ChildProcess

WAIT = 15.0
READY_LINE = "dashboard on http://"


class DashboardServer(ChildProcess):
    """``spc-bridge dashboard --port P --broker-ws ws://127.0.0.1:<ws_port>/mqtt`` on a free port (not started)."""

    def __init__(self, log_dir: Path, broker: Listeners, name: str = "dashboard") -> None:
        self.port = free_port()
        self.broker_ws = f"ws://{broker.host}:{broker.ws_port}/mqtt"
        super().__init__(["dashboard", "--port", str(self.port), "--broker-ws", self.broker_ws],
                         log_dir / f"{name}.log", READY_LINE)

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://127.0.0.1:{self.port}/"


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $SPC_ARTIFACTS if set, else the test's own directory."""
    where = Path(os.environ.get("SPC_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def visible(selector: str) -> str:
    """A JS expression: the element exists and is shown (not hidden, laid out)."""
    return (f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0; })()")


def text_of(selector: str) -> str:
    """A JS expression: the trimmed text of the element, '' when there is none."""
    return f"(document.querySelector({json.dumps(selector)})?.textContent ?? '').trim()"


def log_in(pilot: Pilot, page: str, url: str, user: str, secret: str | None = None) -> None:
    """Load the dashboard and submit the login form as a test user (their password unless ``secret``)."""
    pilot.goto(page, url)
    pilot.wait_for(page, "#login-user")
    pilot.fill(page, "#login-user", user)
    pilot.fill(page, "#login-password", password(user) if secret is None else secret)
    pilot.click(page, "#login-submit")


def logged_in(pilot: Pilot, page: str, url: str, user: str, timeout: float = WAIT) -> None:
    """Log in and wait (bounded) until the page is online and its test hook is set."""
    log_in(pilot, page, url, user)
    try:
        pilot.wait_for(page, expression="!!window.spcDashboard && "
                       "document.querySelector('#conn-state')?.dataset.state === 'online'", timeout=timeout)
    except PilotError as error:
        shown = pilot.evaluate(page, f"({{error: {text_of('#login-error')}, "
                               "state: document.querySelector('#conn-state')?.dataset.state ?? null}})")
        raise PilotError(f"{user} not logged in: the page shows {shown}\n{error}") from None


def show(pilot: Pilot, page: str, route: str, view: str, timeout: float = WAIT) -> None:
    """Go to a route of the page ("#/c/1", "#/inbox", ...) and wait until its view is shown."""
    pilot.evaluate(page, "(route) => { location.hash = route; return true; }", route)
    pilot.wait_for(page, expression=visible(view), timeout=timeout)


def show_chart(pilot: Pilot, page: str, characteristic_id: int, timeout: float = WAIT) -> None:
    """Open the chart view of a characteristic and wait until its chart hook is set for it."""
    show(pilot, page, f"#/c/{characteristic_id}", "#chart-view", timeout)
    pilot.wait_for(page, expression=f"window.spcDashboard?.chart?.id === {characteristic_id}", timeout=timeout)


def screenshot(pilot: Pilot, page: str, where: Path, view: str) -> Path:
    """A full-page PNG named after the view."""
    return pilot.screenshot(page, where / f"{view}.png")


class TimedSubscriber:
    """A test subscriber (paho) that records when each message arrives, wall-clock (time.time(): the clock the
    page's Date.now() reads on this machine), to time events from their arrival here to their display there."""

    def __init__(self, broker: Listeners, *topics: str, user: str = "dashboard") -> None:
        self.arrivals: list[tuple[float, str, dict[str, Any]]] = []
        self._changed = threading.Condition()
        self.probe = MqttProbe(broker, user=user)
        self.probe.client.on_message = self._on_message
        for topic in topics:
            self.probe.subscribe(topic)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        at = time.time()
        try:
            body = json.loads(message.payload) if message.payload else {}
        except ValueError:
            body = {"raw": message.payload.decode("utf-8", "replace")}
        with self._changed:
            self.arrivals.append((at, message.topic, body if isinstance(body, dict) else {"value": body}))
            self._changed.notify_all()

    def wait(self, topic: str, count: int, timeout: float = WAIT) -> list[tuple[float, dict[str, Any]]]:
        """The first ``count`` messages on ``topic`` (arrival time, body), waiting for them (bounded)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.on(topic)) >= count, timeout)
            found = self.on(topic)
        if len(found) < count:
            raise TimeoutError(f"{len(found)} of {count} messages on {topic} within {timeout} s")
        return found[:count]

    def on(self, topic: str) -> list[tuple[float, dict[str, Any]]]:
        """The messages on ``topic`` so far."""
        return [(at, body) for at, t, body in self.arrivals if t == topic]

    def close(self) -> None:
        """Disconnect."""
        self.probe.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# In the page: when each violation first appears in an inbox list (MutationObserver) and as a chart marker
# (spcDashboard.chart.markers(), checked every 4 ms and at every frame), by Date.now(): the clock time.time()
# reads in the test.
VIOLATION_RECORDER = """(() => {
  const seen = window.__spcSeen = { inbox: {}, marker: {} };
  const scanInbox = () => {
    for (const element of document.querySelectorAll('.violation[data-violation-id]')) {
      const id = element.dataset.violationId;
      if (!(id in seen.inbox) && element.getClientRects().length > 0) seen.inbox[id] = Date.now();
    }
  };
  const scanMarkers = () => {
    const chart = window.spcDashboard?.chart;
    if (!chart || typeof chart.markers !== 'function') return;
    for (const marker of chart.markers()) {
      if (!(marker.violation_id in seen.marker)) seen.marker[marker.violation_id] = Date.now();
    }
  };
  new MutationObserver(scanInbox).observe(document.body, { subtree: true, childList: true, attributes: true });
  setInterval(scanMarkers, 4);
  const frame = () => { scanMarkers(); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  scanInbox();
  scanMarkers();
  return true;
})()"""
