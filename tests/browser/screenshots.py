"""Regenerate the dashboard screenshots of the docs (dashboard-overview.png, dashboard-chart.png,
dashboard-inbox.png, dashboard-ack.png) into a folder.

It starts, in a temporary folder removed at the end and on loopback only: the embedded broker with the test users,
``spc-bridge run --users`` with five characteristics of a machining and assembly line, and ``spc-bridge
dashboard``. Gauges (a fixed random seed, so the pictures repeat) publish a few readings a second each for
``--seconds``, with the odd outlier and shift so violations exist; then headless Chromium (tests/browser/pilot.py)
logs in as the engineer at 1600x900 and takes the pictures. Every process is stopped by PID, every wait bounded.

    cd /work/main && python3 -m tests.browser.screenshots DIR [--seconds 60]
    cp DIR/dashboard-*.png docs/     # once they look right

Needs what the browser tests need: node, /usr/bin/chromium and ``npm ci`` in tests/browser.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from bridge.contract import limits_topic, sample_topic
from tests.brokers import EmbeddedBrokerThread, MqttProbe, start_embedded_broker
from tests.browser.dashboard_env import WAIT, DashboardServer, logged_in, show, show_chart
from tests.browser.pilot import Pilot
from tests.credentials import Certificates, create_role_users
from tests.processes import bridge_process

SEED = 20261201
RATE = 5.0                   # readings (bore: subgroups) a second per gauge
WIDTH, HEIGHT = 1600, 900    # the docs' pictures
LIVE = 10                    # the last ticks, published while the page is open
DRAIN_TIMEOUT = 60.0         # for the bridge to publish the last samples after the gauges stop
SHAFT, BORE, WELD, FILL, TORQUE = 1, 2, 3, 4, 5
TOPICS = {SHAFT: "line/lathe3/shaft_length", BORE: "line/mill2/bore_diameter", WELD: "line/weld1/current",
          FILL: "line/filler2/weight", TORQUE: "line/assembly/torque"}
CONFIG = f"""
[[characteristic]]
id = {SHAFT}
name = "Shaft length"
topic = "{TOPICS[SHAFT]}"
chart = "imr"
center = 45.00
sigma = 0.02
usl = 45.08
lsl = 44.92

[[characteristic]]
id = {BORE}
name = "Bore diameter"
topic = "{TOPICS[BORE]}"
chart = "xbar_r"
subgroup_size = 5
baseline = 20
usl = 74.05
lsl = 73.95

[[characteristic]]
id = {WELD}
name = "Spot-weld current"
topic = "{TOPICS[WELD]}"
chart = "imr"
baseline = 25

[[characteristic]]
id = {FILL}
name = "Fill weight"
topic = "{TOPICS[FILL]}"
chart = "ewma"
center = 500.0
sigma = 1.5
lambda = 0.2
lsl = 494.0
usl = 506.0

[[characteristic]]
id = {TORQUE}
name = "Tightening torque"
topic = "{TOPICS[TORQUE]}"
chart = "cusum"
center = 25.0
sigma = 0.5
k = 0.5
h = 5
"""
# The overview redraws its tiles at most every 200 ms (overview.js MIN_FLUSH_MS): past that, and a frame.
TILES_DRAWN = "new Promise((done) => setTimeout(() => requestAnimationFrame(() => done(true)), 400))"
SHOTS = ("dashboard-overview.png", "dashboard-chart.png", "dashboard-inbox.png", "dashboard-ack.png")


def readings(rnd: random.Random, k: int) -> dict[str, str]:
    """The payload each gauge publishes at tick ``k`` (from 1): noise, outliers, a tool-wear drift, shifts."""
    shaft = rnd.gauss(45.0, 0.02) + (0.09 if k % 37 == 0 else 0.0)
    bore_mean = 74.0 + (0.006 if 180 <= k % 300 < 215 else 0.0)  # a worn boring bar, then a tool change
    bore = ", ".join(f"{rnd.gauss(bore_mean, 0.01):.4f}" for _ in range(5))
    weld = rnd.gauss(8.5, 0.12) + (0.9 if k in (4, 140, 260) else 0.0)  # kA; the 4th in the baseline
    fill = rnd.gauss(500.0 + (1.2 if k % 200 > 150 else 0.0), 1.5)
    torque = rnd.gauss(25.0 + (0.6 if k % 150 > 100 else 0.0), 0.5)
    return {TOPICS[SHAFT]: f"{shaft:.3f}", TOPICS[BORE]: f'{{"values": [{bore}]}}', TOPICS[WELD]: f"{weld:.3f}",
            TOPICS[FILL]: f"{fill:.2f}", TOPICS[TORQUE]: f"{torque:.3f}"}


def publish(gauge: MqttProbe, rnd: random.Random, ticks: range) -> None:
    """Publish every gauge's readings for ``ticks``, RATE a second."""
    start = time.monotonic()
    for n, k in enumerate(ticks, 1):
        for topic, payload in readings(rnd, k).items():
            gauge.publish(topic, payload)
        time.sleep(max(0.0, start + n / RATE - time.monotonic()))


def drained(watcher: MqttProbe, count: int) -> dict[str, int]:
    """Wait (bounded) until the bridge has published ``count`` samples of each characteristic: by characteristic,
    the last one's id."""
    last: dict[str, int] = {}
    for cid in TOPICS:
        samples = watcher.wait_for(sample_topic(cid), count, timeout=DRAIN_TIMEOUT)
        if len(samples) < count:
            raise TimeoutError(f"characteristic {cid}: {len(samples)} of {count} samples within {DRAIN_TIMEOUT} s")
        last[str(cid)] = max(json.loads(m.payload)["sample_id"] for m in samples)
    return last


def wait_for_limits(broker: EmbeddedBrokerThread) -> None:
    """Wait (bounded) until the bridge has published the retained limits of every characteristic."""
    with MqttProbe(broker, user="dashboard") as probe:
        for cid in TOPICS:
            probe.subscribe(limits_topic(cid))
            if not probe.wait_for(limits_topic(cid), 1, timeout=WAIT):
                raise TimeoutError(f"the bridge published no limits of characteristic {cid}")


def take_screenshots(pilot: Pilot, url: str, out: Path, gauge: MqttProbe, watcher: MqttProbe, ticks: int) -> None:
    """Log in as the engineer while the last LIVE ticks flow (the tiles show live values), then save the
    overview, the shaft's chart, the inbox and the ack dialog of the first violation."""
    rnd = random.Random(SEED)
    publish(gauge, rnd, range(1, ticks - LIVE + 1))
    drained(watcher, ticks - LIVE)
    page = "engineer"
    pilot.open(page, width=WIDTH, height=HEIGHT)
    logged_in(pilot, page, url, "engineer")
    show(pilot, page, "#/overview", "#overview-view")
    publish(gauge, rnd, range(ticks - LIVE + 1, ticks + 1))
    last = drained(watcher, ticks)
    pilot.wait_for(page, expression="""(last) => {
      const tiles = [...document.querySelectorAll('#tiles .tile')];
      return tiles.length === Object.keys(last).length
        && tiles.every((t) => t.dataset.state && t.dataset.state !== 'unknown')
        && Object.entries(last).every(([id, sid]) => window.spcDashboard.store.get(Number(id))?.last?.sample_id === sid)
        && document.querySelector('#bridge-state')?.dataset.state === 'online';
    }""", arg=last)
    pilot.evaluate(page, TILES_DRAWN)
    pilot.screenshot(page, out / SHOTS[0], full_page=False)
    show_chart(pilot, page, SHAFT)
    pilot.wait_for(page, expression="(sid) => window.spcDashboard.chart.limitLines().x.at(-1) === sid",
                   arg=last[str(SHAFT)])
    pilot.screenshot(page, out / SHOTS[1], full_page=False)
    show(pilot, page, "#/inbox", "#inbox-view")
    pilot.wait_for(page, ".violation button.violation-ack")
    pilot.screenshot(page, out / SHOTS[2], full_page=False)
    pilot.click(page, ".violation button.violation-ack")
    pilot.wait_for(page, "dialog#ack-dialog[open]")
    pilot.wait_for(page, expression="document.activeElement?.id === 'ack-code'", timeout=5)
    pilot.screenshot(page, out / SHOTS[3], full_page=False)


def main() -> None:
    """Parse the command line, start everything in a temporary folder, take the pictures, stop and clean up."""
    parser = argparse.ArgumentParser(prog="python3 -m tests.browser.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder for the PNGs (created)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long readings flow first (default 60)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ticks = max(3 * LIVE, round(args.seconds * RATE))
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="spc-screenshots-"))
    broker: EmbeddedBrokerThread | None = None
    try:
        users = create_role_users(work / "users")
        broker = start_embedded_broker(users, Certificates.create(work / "certs"))
        config = work / "characteristics.toml"
        config.write_text(CONFIG)
        bridge = bridge_process(work, broker.url("bridge"), f"sqlite:///{work / 'spc.db'}", config,
                                "bridge:screenshots", "--users", str(users))
        server = DashboardServer(work, broker)
        try:
            bridge.start()
            wait_for_limits(broker)
            server.start()
            with MqttProbe(broker, user="dashboard") as watcher, MqttProbe(broker, user="gauge") as gauge, \
                    Pilot() as pilot:
                for cid in TOPICS:
                    watcher.subscribe(sample_topic(cid))
                take_screenshots(pilot, server.url, args.out, gauge, watcher, ticks)
        finally:
            server.stop()
            bridge.stop()
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{', '.join(SHOTS)} in {args.out} ({ticks} readings a gauge, {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
