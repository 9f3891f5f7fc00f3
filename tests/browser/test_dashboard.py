"""The browser dashboard (bridge/dashboard) in headless Chromium, on both brokers: ``spc-bridge dashboard`` and
``spc-bridge run --users`` as real processes, pages driven by pilot.mjs, gauges and subscribers in Python.

One Chromium serves the whole module (each test opens its own browser contexts, one per user). Each test saves a
screenshot named after the view to $SPC_ARTIFACTS (default: the test's tmp_path).
Needs /usr/bin/chromium and ``npm ci`` in this directory (``.ci/run`` does both).
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.contract import limits_topic, sample_topic, violation_topic
from bridge.spc.constants import d2
from tests.brokers import BrokerHandle, MqttProbe
from tests.browser.dashboard_env import (
    VIOLATION_RECORDER,
    WAIT,
    DashboardServer,
    TimedSubscriber,
    artifacts,
    log_in,
    logged_in,
    screenshot,
    show,
    show_chart,
    text_of,
    visible,
)
from tests.browser.pilot import Pilot, missing_tools
from tests.processes import REPO, ChildProcess, bridge_process

SHAFT, BORE, FLANGE = 1, 2, 3
TOPICS = {SHAFT: "line/dash/shaft", BORE: "line/dash/bore", FLANGE: "line/dash/flange"}
NAMES = {SHAFT: "Shaft length", BORE: "Bore diameter", FLANGE: "Flange thickness"}
BASELINE = 10
CONFIG = f"""
[[characteristic]]
id = {SHAFT}
name = "{NAMES[SHAFT]}"
topic = "{TOPICS[SHAFT]}"
chart = "imr"
center = 10.0
sigma = 1.0
rules = "rule1"
dispersion_rules = []

[[characteristic]]
id = {BORE}
name = "{NAMES[BORE]}"
topic = "{TOPICS[BORE]}"
chart = "imr"
center = 5.0
sigma = 1.0
rules = "rule1"
dispersion_rules = []

[[characteristic]]
id = {FLANGE}
name = "{NAMES[FLANGE]}"
topic = "{TOPICS[FLANGE]}"
chart = "imr"
baseline = {BASELINE}
rules = "rule1"
dispersion_rules = []
"""
# Phase I of the flange with one outlier (the sixth reading), which the engineer excludes from the limits.
FLANGE_READINGS = [20.0, 20.2, 19.9, 20.1, 19.8, 24.5, 20.0, 20.3, 19.7, 20.1]
OUTLIER = 5
BENCH_TIMEOUT = 180.0
DISPLAY_LIMIT = 1.0  # seconds from an event's arrival at a subscriber to its display in the page


@pytest.fixture(autouse=True)
def browser_tools() -> None:
    """Fail (never skip) when the browser tools are missing: `bash .ci/run` installs them."""
    missing = missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `bash .ci/run` (or `npm ci` in tests/browser)")


@pytest.fixture(scope="module")
def pilot() -> Iterator[Pilot]:
    """One headless Chromium for the module's tests."""
    if missing_tools():
        pytest.fail(f"missing {', '.join(missing_tools())}: run `bash .ci/run` (or `npm ci` in tests/browser)")
    with Pilot() as driver:
        yield driver


@dataclass
class Stack:
    """The bridge and the dashboard's server on one broker."""

    broker: BrokerHandle
    bridge: ChildProcess
    server: DashboardServer
    shots: Path

    @property
    def url(self) -> str:
        """The dashboard's address."""
        return self.server.url


@pytest.fixture
def stack(broker: BrokerHandle, role_users: Path, tmp_path: Path) -> Iterator[Stack]:
    """``spc-bridge run --users`` with CONFIG (its retained limits on the broker) and ``spc-bridge dashboard``."""
    config = tmp_path / "dashboard.toml"
    config.write_text(CONFIG)
    bridge = bridge_process(tmp_path, broker.url("bridge"), f"sqlite:///{tmp_path / 'spc.db'}", config,
                            "bridge:dashboard", "--users", str(role_users))
    server = DashboardServer(tmp_path, broker)
    bridge.start()
    try:
        with MqttProbe(broker, user="dashboard") as probe:
            for cid in NAMES:
                probe.subscribe(limits_topic(cid))
                if not probe.wait_for(limits_topic(cid), 1, timeout=WAIT):
                    raise TimeoutError(f"the bridge published no limits of {cid}:\n{bridge.output()[-3000:]}")
        server.start()
        yield Stack(broker, bridge, server, artifacts(tmp_path))
    finally:
        server.stop()
        bridge.stop()


@pytest.fixture
def pages(pilot: Pilot) -> Iterator[list[str]]:
    """The names of the pages a test opens; each is closed afterwards (with its browser context)."""
    opened: list[str] = []
    yield opened
    for page in opened:
        try:
            pilot.close_page(page)
        except AssertionError:
            pass  # the test's failure says more


def open_page(pilot: Pilot, pages: list[str], name: str) -> str:
    """A page in a browser context of its own (a separate browser, as far as the dashboard can tell)."""
    pilot.open(name)
    pages.append(name)
    return name


def gauge(broker: BrokerHandle, characteristic_id: int, *values: float, first_seq: int = 1) -> None:
    """Readings of a characteristic's gauge, each acknowledged by the broker."""
    with MqttProbe(broker, user="gauge") as probe:
        for seq, value in enumerate(values, first_seq):
            probe.publish(TOPICS[characteristic_id], json.dumps({"value": value, "seq": f"g{seq}"}))


def numbers(text: str) -> list[float]:
    """The numbers written in a text."""
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", text)]


def imr_limits(values: list[float]) -> tuple[float, float, float]:
    """Centre, UCL and LCL of an individuals chart: mean ± 3·MR̄/d2(2), the moving ranges over consecutive values."""
    mean = statistics.fmean(values)
    mr_bar = statistics.fmean(abs(b - a) for a, b in itertools.pairwise(values))
    width = 3 * mr_bar / d2(2)
    return mean, mean + width, mean - width


def monitoring_limits(events: TimedSubscriber, timeout: float = WAIT) -> dict[str, Any]:
    """The first monitoring limits of the flange (its baseline's), waiting for them (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [body for _, body in events.on(limits_topic(FLANGE)) if body.get("phase") == "monitoring"]
        if found:
            return found[0]
        time.sleep(0.05)
    raise TimeoutError(f"no monitoring limits of the flange within {timeout} s: {events.on(limits_topic(FLANGE))}")


def test_a_failed_login_shows_why_and_no_data(pilot: Pilot, stack: Stack, pages: list[str]) -> None:
    """A wrong password: the login view stays, #login-error says why, and nothing of the plant is shown."""
    page = open_page(pilot, pages, "intruder")
    log_in(pilot, page, stack.url, "operator", "not-the-password")
    message = pilot.wait_for(page, expression=text_of("#login-error"), timeout=WAIT)
    screenshot(pilot, page, stack.shots, f"login-failed-{stack.broker.kind}")
    assert re.search(r"password|credential|refused|denied|not authori[sz]ed|user name|log ?in", message, re.IGNORECASE), \
        f"unclear refusal: {message!r}"
    assert pilot.evaluate(page, visible("#login-view")), "the login view is no longer shown"
    assert not pilot.evaluate(page, visible("#overview-view")), "the overview is shown without a login"
    assert pilot.count(page, ".tile[data-id]") == 0
    assert pilot.count(page, ".violation[data-violation-id]") == 0
    assert pilot.evaluate(page, "window.spcDashboard?.store?.list().length ?? 0") == 0


def test_b_overview_shows_one_tile_per_characteristic(pilot: Pilot, stack: Stack, pages: list[str]) -> None:
    """The dashboard user's overview: exactly one tile per configured characteristic, with its name."""
    page = open_page(pilot, pages, "overview")
    logged_in(pilot, page, stack.url, "dashboard")
    show(pilot, page, "#/overview", "#overview-view")
    tiles = ("[...document.querySelectorAll('#tiles > .tile[data-id]')].map(t => "
             "[Number(t.dataset.id), t.querySelector('.tile-name')?.textContent.trim() ?? null])")
    expected = sorted([cid, name] for cid, name in NAMES.items())
    try:  # the names come with the retained limits, a moment after the tiles
        pilot.wait_for(page, expression=f"(() => {{ const shown = {tiles}.sort((a, b) => a[0] - b[0]); "
                       f"return JSON.stringify(shown) === {json.dumps(json.dumps(expected, separators=(',', ':')))}; }})()")
    except AssertionError:
        pass  # the assertion below says what is shown
    screenshot(pilot, page, stack.shots, f"overview-{stack.broker.kind}")
    shown = pilot.evaluate(page, tiles)
    assert sorted(map(tuple, shown)) == sorted(NAMES.items())
    assert pilot.text(page, "#user-name").strip() == "dashboard"


@pytest.mark.serial  # it times the display
def test_c_violation_shown_within_a_second(pilot: Pilot, stack: Stack, pages: list[str]) -> None:
    """Three points beyond the UCL: each violation is drawn as a chart marker and listed in the chart's inbox
    within DISPLAY_LIMIT of its MQTT event reaching a subscriber on this machine (both by the wall clock)."""
    page = open_page(pilot, pages, "watch")
    logged_in(pilot, page, stack.url, "operator")
    show_chart(pilot, page, SHAFT)
    pilot.wait_for(page, "#chart-violations", state="attached")
    assert pilot.evaluate(page, VIOLATION_RECORDER)
    with TimedSubscriber(stack.broker, violation_topic(SHAFT), sample_topic(SHAFT)) as events:
        gauge(stack.broker, SHAFT, 10.2, 14.0, 10.1, 14.5, 9.9, 15.0)
        arrivals = events.wait(violation_topic(SHAFT), 3)
    ids = [str(body["violation_id"]) for _, body in arrivals]
    seen = pilot.wait_for(page, expression=f"(() => {{ const s = window.__spcSeen; const ids = {json.dumps(ids)}; "
                          "return ids.every(i => i in s.inbox && i in s.marker) && s; })()", timeout=WAIT)
    screenshot(pilot, page, stack.shots, f"chart-violations-{stack.broker.kind}")
    delays = {vid: {"marker": seen["marker"][vid] / 1000 - at, "inbox": seen["inbox"][vid] / 1000 - at}
              for vid, (at, _) in zip(ids, arrivals)}
    slow = {vid: d for vid, d in delays.items() if max(d.values()) >= DISPLAY_LIMIT}
    assert not slow, f"shown later than {DISPLAY_LIMIT} s after the event (s): {delays}"
    pilot.wait_for(page, expression=f"{text_of('#inbox-count')} === '{len(ids)}'", timeout=5)  # the header's count
    markers = pilot.evaluate(page, "window.spcDashboard.chart.markers()")
    by_id = {str(m["violation_id"]): m for m in markers}
    for _, body in arrivals:
        marker = by_id[str(body["violation_id"])]
        assert (marker["sample_id"], marker["rule_id"]) == (body["sample_id"], body["rule_id"])
    print(f"display delays on {stack.broker.kind} (s): {delays}")


def test_d_acknowledgement_reaches_a_second_browser(pilot: Pilot, stack: Stack, pages: list[str]) -> None:
    """The operator acknowledges a violation with the keyboard in the ack dialog; another browser (the
    dashboard user, its own context and connection) shows it acknowledged, with the user, code and comment."""
    operator = open_page(pilot, pages, "operator")
    watcher = open_page(pilot, pages, "watcher")
    logged_in(pilot, operator, stack.url, "operator")
    logged_in(pilot, watcher, stack.url, "dashboard")
    show(pilot, operator, "#/inbox", "#inbox-view")
    show_chart(pilot, watcher, SHAFT)
    with TimedSubscriber(stack.broker, violation_topic(SHAFT)) as events:
        gauge(stack.broker, SHAFT, 14.2)
        [(_, violation)] = events.wait(violation_topic(SHAFT), 1)
    vid = violation["violation_id"]
    row = f'.violation[data-violation-id="{vid}"]'
    pilot.wait_for(operator, f"{row} button.violation-ack")
    pilot.wait_for(watcher, row)
    assert pilot.evaluate(watcher, f"document.querySelector('{row}').dataset.acknowledged") == "false"

    pilot.click(operator, f"{row} button.violation-ack")
    pilot.wait_for(operator, "dialog#ack-dialog[open]")
    pilot.wait_for(operator, expression="document.activeElement?.id === 'ack-code'", timeout=5)
    codes = pilot.evaluate(operator, "[...document.querySelectorAll('#ack-code option')].map(o => o.value)")
    assert "material" in codes, codes
    pilot.select(operator, "#ack-code", "material")
    comment = "Bar stock from a new supplier"
    pilot.press(operator, "Tab")
    assert pilot.evaluate(operator, "document.activeElement?.id") == "ack-comment", "Tab from the code: not the comment"
    pilot.type_text(operator, comment)
    screenshot(pilot, operator, stack.shots, f"ack-dialog-{stack.broker.kind}")
    for _ in range(6):  # Tab on to the confirm button, and press it with the keyboard
        if pilot.evaluate(operator, "document.activeElement?.id") == "ack-confirm":
            break
        pilot.press(operator, "Tab")
    assert pilot.evaluate(operator, "document.activeElement?.id") == "ack-confirm", "Tab never reached #ack-confirm"
    pilot.press(operator, "Enter")
    pilot.wait_for(operator, "dialog#ack-dialog[open]", state="detached")

    acknowledged = f'{row}[data-acknowledged="true"]'
    pilot.wait_for(watcher, acknowledged, state="attached", timeout=WAIT)
    state = pilot.text(watcher, f"{acknowledged} .violation-state")
    screenshot(pilot, watcher, stack.shots, f"chart-acknowledged-{stack.broker.kind}")
    for part in ("acknowledged", "operator", "material", comment):
        assert part in state, f"{part!r} not in the second browser's {state!r}"


def test_e_engineer_recalculation_moves_the_limit_lines(pilot: Pilot, stack: Stack, pages: list[str]) -> None:
    """Phase I of the flange with an outlier: the engineer selects it on the chart, previews and confirms the
    recalculation; the chart's limit lines move to the limits of the other nine readings (I-MR), the same as the
    retained limits the bridge publishes."""
    with TimedSubscriber(stack.broker, sample_topic(FLANGE), limits_topic(FLANGE)) as events:
        gauge(stack.broker, FLANGE, *FLANGE_READINGS)
        samples = [body for _, body in events.wait(sample_topic(FLANGE), len(FLANGE_READINGS))]
        first = monitoring_limits(events)
        assert (first["center"], first["ucl"], first["lcl"]) == pytest.approx(imr_limits(FLANGE_READINGS), rel=1e-9)
        outlier = samples[OUTLIER]["sample_id"]

        page = open_page(pilot, pages, "engineer")
        logged_in(pilot, page, stack.url, "engineer")
        show_chart(pilot, page, FLANGE)
        pilot.wait_for(page, expression=visible("#workflow"), timeout=WAIT)
        lines = "window.spcDashboard.chart.limitLines()"
        pilot.wait_for(page, expression=f"(() => {{ const l = {lines}; return l.x.length > 0 && "
                       f"Math.abs(l.ucl[l.ucl.length - 1] - {first['ucl']!r}) < 1e-9; }})()", timeout=WAIT)
        before = pilot.evaluate(page, lines)

        pilot.evaluate(page, "(ids) => { window.spcDashboard.chart.select(ids); return true; }", [outlier])
        assert pilot.evaluate(page, "window.spcDashboard.chart.selected()") == [outlier]
        pilot.wait_for(page, expression=f"{text_of('#wf-selected')}.includes('1')", timeout=5)
        pilot.click(page, "#wf-preview")
        proposed_text = pilot.wait_for(page, expression=text_of("#wf-proposed"), timeout=WAIT)
        kept = [v for i, v in enumerate(FLANGE_READINGS) if i != OUTLIER]
        center, ucl, lcl = imr_limits(kept)
        shown = numbers(proposed_text)
        for name, value in (("centre", center), ("UCL", ucl), ("LCL", lcl)):
            assert any(abs(n - value) < 0.01 for n in shown), f"proposed {name} {value:.4f} not in {proposed_text!r}"
        assert pilot.evaluate(page, lines) == before, "a preview moved the limit lines"
        screenshot(pilot, page, stack.shots, f"chart-workflow-preview-{stack.broker.kind}")

        published_before = len(events.on(limits_topic(FLANGE)))
        pilot.fill(page, "#wf-reason", "reading 6: gauge dropped")
        pilot.click(page, "#wf-confirm")
        retained = events.wait(limits_topic(FLANGE), published_before + 1)[-1][1]
        moved = f"(() => {{ const l = {lines}; const last = l.ucl.length - 1; return Math.abs(l.ucl[last] - {ucl!r}) < 1e-6; }})()"
        try:
            pilot.wait_for(page, expression=moved, timeout=WAIT)
            moved_at_once = True
        except AssertionError:
            moved_at_once = False  # asserted at the end, after what the next reading shows
        at_confirm = pilot.evaluate(page, lines)
        message = pilot.evaluate(page, text_of("#wf-message"))
        screenshot(pilot, page, stack.shots, f"chart-recalculated-{stack.broker.kind}")

        # the next reading is judged by the recalculated limits: the lines' step under it shows them
        gauge(stack.broker, FLANGE, 20.05, first_seq=len(FLANGE_READINGS) + 1)
        newest = events.wait(sample_topic(FLANGE), len(FLANGE_READINGS) + 1)[-1][1]["sample_id"]
        pilot.wait_for(page, expression=f"{lines}.x.at(-1) === {newest}", timeout=WAIT)
        after = pilot.evaluate(page, lines)

    assert (retained["center"], retained["ucl"], retained["lcl"]) == pytest.approx((center, ucl, lcl), rel=1e-9)
    assert retained["limit_set"]["version"] > first["limit_set"]["version"]
    assert message, "no result shown in #wf-message"
    assert (after["center"][-1], after["ucl"][-1], after["lcl"][-1]) == pytest.approx((center, ucl, lcl), rel=1e-9)
    assert moved_at_once, (f"the limit lines did not move when the recalculation was confirmed (#wf-message "
                           f"{message!r}; the bridge published centre {retained['center']}, UCL {retained['ucl']}, "
                           f"LCL {retained['lcl']}); they still were {at_confirm}")


# Records, in the page, when its connection went back online (ms since the epoch, as Python's time.time() * 1000).
ONLINE_RECORDER = """(() => {
  window.__spcOnline = [];
  window.spcDashboard.session.addEventListener("connection", (e) => {
    if (e.detail.state === "online") window.__spcOnline.push(Date.now());
  });
  return true;
})()"""


def test_f_a_lost_connection_is_shown_and_what_was_missed_is_fetched(pilot: Pilot, stack: Stack,
                                                                     pages: list[str]) -> None:
    """The page's WebSocket is cut: the header says it is reconnecting, a violation the bridge publishes in the
    meantime never reaches the page live, and after the page has reconnected by itself (still on its chart) the
    violation is in its inbox and on its chart, fetched again."""
    page = open_page(pilot, pages, "away")
    logged_in(pilot, page, stack.url, "operator")
    show_chart(pilot, page, SHAFT)
    pilot.wait_for(page, expression="window.spcDashboard.store.get(1)?.historyLoaded === true", timeout=WAIT)
    assert pilot.evaluate(page, ONLINE_RECORDER)
    with TimedSubscriber(stack.broker, violation_topic(SHAFT)) as events:
        pilot.evaluate(page, "(() => { window.spcDashboard.session.client.stream.destroy(); return true; })()")
        gauge(stack.broker, SHAFT, 15.5, first_seq=100)
        [(published_at, violation)] = events.wait(violation_topic(SHAFT), 1)
    assert pilot.evaluate(page, "document.querySelector('#conn-state').dataset.state") == "reconnecting"
    screenshot(pilot, page, stack.shots, f"reconnecting-{stack.broker.kind}")
    pilot.wait_for(page, expression="document.querySelector('#conn-state').dataset.state === 'online'", timeout=WAIT)
    row = f'#chart-violations .violation[data-violation-id="{violation["violation_id"]}"]'
    pilot.wait_for(page, row, timeout=WAIT)
    [online_at] = pilot.evaluate(page, "window.__spcOnline")
    assert online_at / 1000 > published_at, "the page was back before the violation was published: no gap"
    assert pilot.evaluate(page, "location.hash") == f"#/c/{SHAFT}" and pilot.evaluate(page, visible("#chart-view"))
    markers = pilot.evaluate(page, "window.spcDashboard.chart.markers()")
    assert violation["violation_id"] in [marker["violation_id"] for marker in markers]


def test_the_benchmark_runs_with_tiny_numbers() -> None:
    """``python3 -m tests.browser.bench_dashboard`` end to end, tiny: it prints its figures as JSON (no targets
    asserted: those are for the full run on a quiet machine)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.browser.bench_dashboard", "--points", "1000", "--characteristics", "20",
         "--rate", "50", "--duration", "5", "--window", "1", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=BENCH_TIMEOUT, check=False)
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    figures = json.loads(done.stdout)
    chart, overview = figures["chart"], figures["overview"]
    assert chart["points"] == chart["samples_in_store"] == 1000
    assert all(ms > 0 for ms in chart["render_ms"]) and chart["interactions"] == 37
    assert overview["characteristics"] == 20 and overview["sent"] == 250
    assert overview["received"] == overview["sent"], overview
    assert len(overview["windows"]) == 5
    assert all(w["lag_ms"]["p50"] is not None and w["heap_mib"] > 0 for w in overview["windows"])
