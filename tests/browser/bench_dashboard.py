"""Benchmark of the browser dashboard in headless Chromium, against Mosquitto (the repository's mosquitto.conf)
and ``spc-bridge dashboard``, with a simulated bridge (Python, as the "bridge" test user):

(a) a chart of --points samples: its render time (spcDashboard.bench.loadSynthetic, then chart.renderMs; target
    under 300 ms for 10,000) and its interactivity: the time from a zoom or pan key, or a wheel step, to the
    redrawn chart (the end of the task and frame that drew it);
(b) an overview of --characteristics characteristics (retained limits and status of each) receiving sample and
    status events at --rate a second for --duration seconds: every --window seconds the lag (now minus the
    event's publication time, carried in its timestamp: when the page's store took it and at the frame after),
    p50/p99, JS heap, DOM nodes and frames; and whether lag or memory grow (first window against last, heap
    also after a forced garbage collection at start and end). Targets: no growing lag, memory bounded.

    python3 -m tests.browser.bench_dashboard [--points 10000] [--characteristics 1000] [--rate 1000]
                                              [--duration 300] [--window 10] [--json] [--strict]

--strict: exit status 1 when a target is missed. Not a pytest test (test_dashboard.py runs it once with tiny numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bridge.contract import (
    STATE_TOPIC,
    limits_topic,
    request_topic,
    response_topic,
    sample_topic,
    status_topic,
)
from tests.brokers import MosquittoProcess, start_mosquitto
from tests.browser.dashboard_env import DashboardServer, logged_in, show, show_chart
from tests.browser.pilot import Pilot
from tests.credentials import Certificates, create_role_users, password

RENDER_TARGET_MS = 300.0
INTERACTION_TARGET_MS = 100.0
LAG_GROWTH_MS = 250.0       # lag p50 of the last windows above the first's by more (p99: twice): falls behind
HEAP_GROWTH = 1.5           # heap after GC at the end above this × at the start (and HEAP_SLACK more): grows
HEAP_SLACK = 16 * 2**20
PACE_S = 0.005              # the publisher sends what is due every 5 ms
STATUS_SHARE = 0.1          # of the events, status; the rest samples
BRIDGE_CLIENT_ID = "bridge:dashboard-bench"
SETUP_TIMEOUT = 120.0

# In the page, on the store's events: each sample's and status's lag from its publication (its timestamp),
# when the store took it and at the next frame (when the overview draws it), and the frames drawn.
RECORDER = """(() => {
  const store = window.spcDashboard.store;
  const rec = window.__bench = { received: [], framed: [], pending: [], frames: 0, maxGap: 0, last: 0, count: 0 };
  const took = (timestamp) => {
    const published = Date.parse(timestamp);
    rec.received.push(Date.now() - published);
    rec.pending.push(published);
    rec.count++;
  };
  const statuses = new Map(store.list().map((ch) => [ch.id, ch.status]));  // the retained ones: not events
  store.addEventListener('samples', (event) => { const s = event.detail.sample; if (s?.timestamp) took(s.timestamp); });
  store.addEventListener('characteristic', (event) => {
    const status = store.get(event.detail.id)?.status;
    if (status && statuses.get(event.detail.id) !== status) {
      statuses.set(event.detail.id, status);
      if (status.timestamp) took(status.timestamp);
    }
  });
  const frame = (now) => {
    if (rec.last) rec.maxGap = Math.max(rec.maxGap, now - rec.last);
    rec.last = now;
    rec.frames++;
    const wall = Date.now();
    for (const published of rec.pending) rec.framed.push(wall - published);
    rec.pending.length = 0;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  rec.take = () => {
    const out = { received: rec.received, framed: rec.framed, frames: rec.frames, maxGapMs: rec.maxGap,
                  count: rec.count, nodes: document.getElementsByTagName('*').length,
                  heap: performance.memory ? performance.memory.usedJSHeapSize : null };
    rec.received = []; rec.framed = []; rec.frames = 0; rec.maxGap = 0;
    return out;
  };
  return true;
})()"""

# In the page: the time from a key or wheel event on the chart to the end of the task that handled it (uPlot
# redraws in a microtask of it) and to the end of the next frame.
INTERACTION_PROBE = """(() => {
  const box = document.querySelector('#chart-main');
  const times = window.__interaction = [];
  const started = (event) => {
    const t0 = performance.now();
    const entry = { type: event.type, key: event.key ?? null, handled: null, framed: null };
    times.push(entry);
    setTimeout(() => { entry.handled = performance.now() - t0; }, 0);
    requestAnimationFrame(() => setTimeout(() => { entry.framed = performance.now() - t0; }, 0));
  };
  box.addEventListener('keydown', started, { capture: true });
  box.addEventListener('wheel', started, { capture: true, passive: true });
  return true;
})()"""


def iso_now() -> str:
    """The current time as the bridge writes it (ISO 8601, UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def limits_payload(cid: int) -> dict[str, Any]:
    """Retained limits of a simulated I-MR characteristic in monitoring."""
    return {
        "characteristic_id": cid, "name": f"Bench characteristic {cid:04d}", "chart": "imr", "phase": "monitoring",
        "center": 10.0, "ucl": 13.0, "lcl": 7.0, "sigma": 1.0, "n": 1,
        "dispersion": {"chart": "mr", "center": 1.128, "ucl": 3.686, "lcl": 0.0},
        "capability": {"cp": 1.4, "cpk": 1.35, "pp": 1.38, "ppk": 1.3, "usl": 14.2, "lsl": 5.8},
        "reason": "benchmark", "statistic": "value", "limit_set": {"id": cid, "version": 1}, "effective_from": 1,
    }


def status_payload(cid: int, in_control: bool = True) -> dict[str, Any]:
    """A status event of a simulated characteristic, stamped now."""
    now = iso_now()
    return {"characteristic_id": cid, "stale": False, "stale_reason": None, "timestamp": now, "phase": "monitoring",
            "in_control": in_control, "open_violations": 0, "last_sample_at": now, "cpk": 1.35}


ZONES = ((1, "zone_c"), (2, "zone_b"), (3, "zone_a"))


def sample_payload(cid: int, sample_id: int, value: float, previous: float | None, seq: int) -> dict[str, Any]:
    """A sample event of a simulated characteristic (centre 10, sigma 1), stamped now."""
    d = value - 10.0
    zone = next((f"{name}_{'upper' if d >= 0 else 'lower'}" for bound, name in ZONES if abs(d) <= bound),
                "beyond_ucl" if d > 0 else "beyond_lcl")
    return {"sample_id": sample_id, "characteristic_id": cid, "timestamp": iso_now(), "value": value, "zone": zone,
            "in_control": abs(d) <= 3, "n": 1, "range": None, "mr": None if previous is None else abs(value - previous),
            "s": None, "ucl": None, "lcl": None, "cusum_upper": None, "cusum_lower": None, "ewma": None,
            "seq": f"bench-{seq}"}


class SimulatedBridge:
    """The "bridge" test user on the broker: retained limits and status, the bridge's state, answers to history
    requests (empty histories), and paced sample and status events from a thread."""

    def __init__(self, broker: MosquittoProcess, characteristics: int) -> None:
        self.characteristics = characteristics
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=BRIDGE_CLIENT_ID, protocol=mqtt.MQTTv311)
        self.client.username_pw_set("bridge", password("bridge"))
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_request
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not connected.wait(10):
            self.close()
            raise TimeoutError("the simulated bridge could not connect")
        self.client.subscribe(request_topic("+", "history"), 1)

    def publish_retained(self) -> None:
        """The bridge's state and every characteristic's limits and status, retained, acknowledged (bounded)."""
        infos = [self.client.publish(STATE_TOPIC, "online", 1, True)]
        for cid in range(1, self.characteristics + 1):
            infos.append(self.client.publish(limits_topic(cid), json.dumps(limits_payload(cid)), 1, True))
            infos.append(self.client.publish(status_topic(cid), json.dumps(status_payload(cid)), 1, True))
        deadline = time.monotonic() + SETUP_TIMEOUT
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError("the retained limits and status were not all acknowledged")

    def _on_request(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        user = message.topic.split("/")[-2]
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        cid = body.get("characteristic_id")
        data = {"characteristic_id": cid, "role": None, "commands": None,
                "limits": limits_payload(cid) if isinstance(cid, int) else None, "limit_sets": [], "samples": [],
                "violations": [], "open_violations": [], "proposed_sample_ids": []}
        self.client.publish(response_topic(user, "history"),
                            json.dumps({"status": "ok", "data": data, "transaction": body.get("transaction")}), 1)

    def start(self, rate: float, duration: float) -> None:
        """Publish events at ``rate`` a second (QoS 0, paced in 5 ms steps) for ``duration`` seconds."""
        self._thread = threading.Thread(target=self._run, args=(rate, duration), name="bench-events", daemon=True)
        self._thread.start()

    def _run(self, rate: float, duration: float) -> None:
        rnd = random.Random(15)
        last_value: dict[int, float] = {}
        next_sample = dict.fromkeys(range(1, self.characteristics + 1), 1)
        total = round(duration * rate)
        start = time.monotonic()
        while self.sent < total and not self._stop.is_set():
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            while self.sent < due:
                cid = rnd.randint(1, self.characteristics)
                if rnd.random() < STATUS_SHARE:
                    payload = status_payload(cid, in_control=rnd.random() > 0.05)
                    self.client.publish(status_topic(cid), json.dumps(payload), 0, True)
                else:
                    value = round(rnd.gauss(10.0, 1.0), 4)
                    payload = sample_payload(cid, next_sample[cid], value, last_value.get(cid), self.sent)
                    next_sample[cid] += 1
                    last_value[cid] = value
                    self.client.publish(sample_topic(cid), json.dumps(payload), 0)
                self.sent += 1
            self._stop.wait(PACE_S)

    def join(self, timeout: float) -> None:
        """Wait (bounded) until the events are all sent."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop publishing and disconnect."""
        self._stop.set()
        self.join(10)
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def environment(work: Path) -> Iterator[tuple[MosquittoProcess, DashboardServer]]:
    """Mosquitto with the test users and ``spc-bridge dashboard`` on it, stopped by PID afterwards."""
    users = create_role_users(work / "users")
    certs = Certificates.create(work / "certs")
    broker = start_mosquitto(work, users, certs)
    try:
        server = DashboardServer(work, broker)
        server.start()
        try:
            yield broker, server
        finally:
            server.stop()
    finally:
        broker.stop()


def bench_chart(pilot: Pilot, url: str, points: int, characteristic_id: int = 1) -> dict[str, Any]:
    """(a): render time of a chart of ``points`` samples, and the time of zoom and pan steps to their redraw."""
    page = "chart"
    pilot.open(page)
    try:
        logged_in(pilot, page, url, "dashboard", timeout=60)
        pilot.wait_for(page, expression=f"!!window.spcDashboard.store.get({characteristic_id})", timeout=60)
        show_chart(pilot, page, characteristic_id)
        renders = []
        for _ in range(3):  # the first includes compiling the code paths; all are reported
            pilot.evaluate(page, "(a) => window.spcDashboard.bench.loadSynthetic(a[0], a[1])",
                           [characteristic_id, points], timeout=60)
            renders.append(pilot.evaluate(page, "window.spcDashboard.chart.renderMs"))
        assert pilot.evaluate(page, INTERACTION_PROBE)
        pilot.evaluate(page, "document.querySelector('#chart-main').focus(), true")
        keys = ["+"] * 6 + ["ArrowLeft"] * 6 + ["ArrowRight"] * 6 + ["-"] * 6 + ["0"]
        for key in keys:
            pilot.press(page, key)
            time.sleep(0.05)
        box = pilot.evaluate(page, "(() => { const r = document.querySelector('#chart-main .u-over')"
                             ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        pilot.mouse(page, "move", box[0], box[1])
        for delta in [-120] * 6 + [120] * 6:
            pilot.mouse(page, "wheel", delta_y=delta)
            time.sleep(0.05)
        interactions = pilot.wait_for(page, expression="window.__interaction.length >= 37 && "
                                      "window.__interaction.every(e => e.framed !== null) && window.__interaction",
                                      timeout=15)
        shown = pilot.evaluate(page, f"window.spcDashboard.store.get({characteristic_id}).samples.length")
    finally:
        pilot.close_page(page)
    handled = [e["handled"] for e in interactions]
    framed = [e["framed"] for e in interactions]
    return {
        "points": points, "samples_in_store": shown, "render_ms": renders, "render_ms_best": min(renders),
        "render_target_ms": RENDER_TARGET_MS, "render_ok": renders[-1] < RENDER_TARGET_MS,
        "interactions": len(interactions),
        "interaction_handled_ms": {"p50": percentile(handled, 50), "max": max(handled)},
        "interaction_framed_ms": {"p50": percentile(framed, 50), "p99": percentile(framed, 99), "max": max(framed)},
        "interaction_target_ms": INTERACTION_TARGET_MS,
        "interaction_ok": (percentile(framed, 50) or 0) < INTERACTION_TARGET_MS,
    }


def bench_overview(pilot: Pilot, url: str, bridge: SimulatedBridge, rate: float, duration: float,
                   window: float, log: Any) -> dict[str, Any]:
    """(b): the overview of every characteristic while events arrive at ``rate``; figures per window."""
    page = "overview"
    pilot.open(page)
    try:
        started = time.monotonic()
        logged_in(pilot, page, url, "dashboard", timeout=60)
        show(pilot, page, "#/overview", "#overview-view")
        n = bridge.characteristics
        pilot.wait_for(page, expression=f"document.querySelectorAll('#tiles > .tile[data-id]').length >= {n}",
                       timeout=SETUP_TIMEOUT)
        tiles_s = time.monotonic() - started
        pilot.cdp(page, "HeapProfiler.collectGarbage")
        heap_start = pilot.metrics(page)["JSHeapUsedSize"]
        assert pilot.evaluate(page, RECORDER)
        pilot.evaluate(page, "window.__bench.take(), true")
        windows = []
        bridge.start(rate, duration)
        begun = time.monotonic()
        sent_before = 0
        k = 1
        while True:
            target = begun + k * window
            finished = target > begun + duration + 1e-6
            time.sleep(max(0.0, min(target, begun + duration) - time.monotonic()))
            taken = pilot.evaluate(page, "window.__bench.take()", timeout=30)
            metrics = pilot.metrics(page)
            sent = bridge.sent
            row = {
                "window": k, "t_s": round(time.monotonic() - begun, 1), "sent": sent - sent_before,
                "received": len(taken["received"]),
                "lag_ms": {"p50": percentile(taken["received"], 50), "p99": percentile(taken["received"], 99)},
                "lag_frame_ms": {"p50": percentile(taken["framed"], 50), "p99": percentile(taken["framed"], 99)},
                "frames": taken["frames"], "max_frame_gap_ms": round(taken["maxGapMs"], 1),
                "heap_mib": round(metrics["JSHeapUsedSize"] / 2**20, 2), "dom_nodes": taken["nodes"],
                "cdp_nodes": int(metrics["Nodes"]),
            }
            windows.append(row)
            print(f"  window {k}: {json.dumps(row)}", file=log, flush=True)
            sent_before = sent
            if finished or time.monotonic() - begun >= duration - 1e-6:
                break
            k += 1
        bridge.join(30)
        time.sleep(1.0)  # the last events in flight
        tail = pilot.evaluate(page, "window.__bench.take()", timeout=30)
        pilot.cdp(page, "HeapProfiler.collectGarbage")
        heap_end = pilot.metrics(page)["JSHeapUsedSize"]
        count = pilot.evaluate(page, "window.__bench.count")
        problems = pilot.problems(page)
    finally:
        pilot.close_page(page)
    # first against last windows: the medians of the first and the last third (one window each when few), as
    # one window's figures jump with whatever else the machine runs
    third = max(1, len(windows) // 3)
    early, late = windows[:third], windows[-third:]

    def median_of(rows: list[dict[str, Any]], figure: Any) -> float:
        return statistics.median(figure(row) or 0 for row in rows)

    lag_growth = median_of(late, lambda w: w["lag_frame_ms"]["p50"]) - median_of(early, lambda w: w["lag_frame_ms"]["p50"])
    p99_growth = median_of(late, lambda w: w["lag_frame_ms"]["p99"]) - median_of(early, lambda w: w["lag_frame_ms"]["p99"])
    keeps_up = lag_growth <= LAG_GROWTH_MS and p99_growth <= 2 * LAG_GROWTH_MS and count >= bridge.sent
    heap_growth = median_of(late, lambda w: w["heap_mib"]) - median_of(early, lambda w: w["heap_mib"])
    bounded = heap_end <= heap_start * HEAP_GROWTH + HEAP_SLACK and windows[-1]["dom_nodes"] <= windows[0]["dom_nodes"] * 1.1
    return {
        "characteristics": bridge.characteristics, "rate": rate, "duration_s": duration, "window_s": window,
        "tiles_shown_s": round(tiles_s, 2), "sent": bridge.sent, "received": count,
        "received_after_end": len(tail["received"]), "windows": windows,
        "lag_growth_ms": {"p50": lag_growth, "p99": p99_growth}, "keeps_up": keeps_up,
        "heap_after_gc_mib": {"start": round(heap_start / 2**20, 2), "end": round(heap_end / 2**20, 2)},
        "heap_growth_first_last_mib": round(heap_growth, 2),
        "dom_nodes_first_last": [windows[0]["dom_nodes"], windows[-1]["dom_nodes"]],
        "memory_bounded": bounded, "page_problems": problems[-10:],
    }


def run(points: int, characteristics: int, rate: float, duration: float, window: float,
        log: Any = sys.stderr) -> dict[str, Any]:
    """Both benchmarks on a fresh Mosquitto, dashboard server and Chromium; their figures."""
    work = Path(tempfile.mkdtemp(prefix="spc-dashboard-bench-"))
    load_start = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews every figure
    try:
        with environment(work) as (broker, server), Pilot(default_timeout=30) as pilot:
            bridge = SimulatedBridge(broker, characteristics)
            try:
                started = time.monotonic()
                bridge.publish_retained()
                print(f"retained limits and status of {characteristics} characteristics published in "
                      f"{time.monotonic() - started:.1f} s", file=log, flush=True)
                chart = bench_chart(pilot, server.url, points)
                print(f"chart: {json.dumps(chart)}", file=log, flush=True)
                overview = bench_overview(pilot, server.url, bridge, rate, duration, window, log)
            finally:
                bridge.close()
        return {"chart": chart, "overview": overview, "cpus": os.cpu_count(),
                "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
                "ok": chart["render_ok"] and overview["keeps_up"] and overview["memory_bounded"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(figures: dict[str, Any]) -> str:
    """The figures as text."""
    c, o = figures["chart"], figures["overview"]
    verdict = {True: "ok", False: "MISSED"}
    lines = [
        (f"chart of {c['points']} points: render {', '.join(f'{ms:.0f}' for ms in c['render_ms'])} ms "
        f"(target < {c['render_target_ms']:.0f} ms: {verdict[c['render_ok']]})"),
        (f"  zoom/pan/wheel to redrawn frame: p50 {c['interaction_framed_ms']['p50']:.1f} ms, "
        f"p99 {c['interaction_framed_ms']['p99']:.1f} ms, max {c['interaction_framed_ms']['max']:.1f} ms; "
        f"handled in p50 {c['interaction_handled_ms']['p50']:.1f} ms ({c['interactions']} steps)"),
        (f"overview of {o['characteristics']} characteristics at {o['rate']:g} events/s for {o['duration_s']:g} s: "
        f"tiles shown in {o['tiles_shown_s']} s; {o['received']} of {o['sent']} events taken"),
        (f"  {'window':>6} {'sent':>6} {'taken':>6} {'lag p50':>8} {'p99':>7} {'frame p50':>9} {'p99':>7} "
        f"{'frames':>6} {'gap':>6} {'heap MiB':>8} {'nodes':>6}"),
    ]
    for w in o["windows"]:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.0f}"
        lines.append(f"  {w['window']:>6} {w['sent']:>6} {w['received']:>6} {ms(w['lag_ms']['p50']):>8} "
                     f"{ms(w['lag_ms']['p99']):>7} {ms(w['lag_frame_ms']['p50']):>9} {ms(w['lag_frame_ms']['p99']):>7} "
                     f"{w['frames']:>6} {w['max_frame_gap_ms']:>6.0f} {w['heap_mib']:>8.1f} {w['dom_nodes']:>6}")
    heap = o["heap_after_gc_mib"]
    lines += [
        (f"  lag growth, last against first third of the windows (medians): p50 {o['lag_growth_ms']['p50']:+.0f} ms, "
         f"p99 {o['lag_growth_ms']['p99']:+.0f} ms; every event taken: {o['received'] >= o['sent']}: keeps up: "
         f"{verdict[o['keeps_up']]}"),
        (f"  heap after GC: {heap['start']} MiB at start, {heap['end']} MiB at end; between windows "
         f"{o['heap_growth_first_last_mib']:+.1f} MiB; DOM nodes "
        f"{o['dom_nodes_first_last'][0]} -> {o['dom_nodes_first_last'][1]}: memory bounded: "
        f"{verdict[o['memory_bounded']]}"),
    ]
    lines.append(f"machine: {figures['cpus']} CPUs, load average {figures['load_average']['start'][0]} at start, "
                 f"{figures['load_average']['end'][0]} at end")
    if o["page_problems"]:
        lines.append("  page problems: " + "; ".join(o["page_problems"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python3 -m tests.browser.bench_dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10000, help="samples of the chart (default 10000)")
    parser.add_argument("--characteristics", type=int, default=1000, help="tiles of the overview (default 1000)")
    parser.add_argument("--rate", type=float, default=1000, help="events a second (default 1000)")
    parser.add_argument("--duration", type=float, default=300, help="seconds of events (default 300)")
    parser.add_argument("--window", type=float, default=10, help="seconds of each measurement window (default 10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit status 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.points < 2 or args.characteristics < 1 or args.rate <= 0 or args.duration <= 0 or args.window <= 0:
        parser.error("--points >= 2, --characteristics >= 1, --rate, --duration and --window > 0")
    figures = run(args.points, args.characteristics, args.rate, args.duration, min(args.window, args.duration))
    print(json.dumps(figures, indent=2) if args.json else report(figures))
    return 1 if args.strict and not figures["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
