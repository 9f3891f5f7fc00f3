"""``spc-bridge demo``: embedded broker, bridge, SQLite and three simulated gauges on one laptop.

Characteristic 1 stays in control (X-bar/R from single bore measurements). Characteristics 2
(individuals, known limits) and 3 (p chart of rejects among 50 parts) drift and recover in a
cycle: every CYCLE_S seconds their process shifts steadily for DRIFT_S seconds, up to PEAK_SIGMA
sigma, so that run and zone rules fire and then rule 1, then it is corrected at once and stays in
control for the rest of the cycle. Their cycles are half a cycle apart, so their drifts take turns.

Every reading is a pure function of the seed, the gauge and the reading's index (``reading``):
the demo can be replayed through the engine without waiting.
"""

import random
import tempfile
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.config import CharacteristicConfig, Settings, parse_broker_url
from bridge.contract import (
    ANY_CHARACTERISTIC, STATE_TOPIC, ack_topic, limits_topic, sample_topic, violation_topic,
)
from bridge.dashboard.server import DashboardServer
from bridge.service.runner import Bridge
from bridge.store.failures import shown
from broker.embedded import BrokerThread

HOST = "127.0.0.1"
DEFAULT_SEED = 7
CYCLE_S = 120.0   # one drift and one calm stretch
DRIFT_S = 40.0    # of which the drift
PEAK_SIGMA = 3.0  # how far the process mean has shifted when the drift is corrected
TICK_S = 0.1      # the simulator's clock; every gauge's period is a multiple of it
SHAFT_MEAN, SHAFT_SIGMA = 25.0, 0.05
SOLDER_P, SOLDER_N = 0.06, 50


@dataclass(frozen=True)
class Gauge:
    """A simulated gauge: its characteristic, how often it reads and what it reads."""

    config: dict[str, Any]
    period_s: float
    measure: Callable[[random.Random, float], str]  # payload from the noise and the shift in sigma
    example: str                                    # a payload a user can send by hand
    drift_start_s: float | None = None              # the first drift's start; None: never drifts

    @property
    def topic(self) -> str:
        """The topic it publishes on."""
        return str(self.config["topic"])


def _bore(rng: random.Random, shift: float) -> str:
    return f"{rng.gauss(74.0, 0.01):.4f}"


def _shaft(rng: random.Random, shift: float) -> str:
    return f"{rng.gauss(SHAFT_MEAN, SHAFT_SIGMA) + shift * SHAFT_SIGMA:.4f}"


def _solder(rng: random.Random, shift: float) -> str:
    p = SOLDER_P + shift * (SOLDER_P * (1 - SOLDER_P) / SOLDER_N) ** 0.5
    rejects = sum(rng.random() < p for _ in range(SOLDER_N))
    return f'{{"count": {rejects}, "n": {SOLDER_N}}}'


BORE = Gauge(
    {"id": 1, "name": "Bore diameter, line 1", "topic": "demo/line1/bore", "chart": "xbar_r",
     "subgroup_size": 5, "baseline": 20, "usl": 74.05, "lsl": 73.95},
    0.1, _bore, "74.003")
SHAFT = Gauge(
    {"id": 2, "name": "Shaft length, line 2", "topic": "demo/line2/shaft", "chart": "imr",
     "center": SHAFT_MEAN, "sigma": SHAFT_SIGMA, "usl": 25.3, "lsl": 24.7},
    0.5, _shaft, f"{SHAFT_MEAN + 4 * SHAFT_SIGMA:.2f}", drift_start_s=10.0)  # the example is 4 sigma out
SOLDER = Gauge(
    {"id": 3, "name": "Solder rejects, line 3", "topic": "demo/line3/solder", "chart": "p",
     "subgroup_size": SOLDER_N, "baseline": 20},
    0.5, _solder, f'{{"count": 12, "n": {SOLDER_N}}}', drift_start_s=10.0 + CYCLE_S / 2)
GAUGES = (BORE, SHAFT, SOLDER)


def shift(gauge: Gauge, t: float) -> float:
    """The gauge's process shift, in sigma, ``t`` seconds after the start: 0 while in control."""
    if gauge.drift_start_s is None:
        return 0.0
    phase = (t - gauge.drift_start_s) % CYCLE_S
    return PEAK_SIGMA * phase / DRIFT_S if phase < DRIFT_S else 0.0


def reading(gauge: Gauge, k: int, seed: int = DEFAULT_SEED) -> str:
    """The payload of the gauge's ``k``-th reading (0-based) in the demo run with ``seed``."""
    rng = random.Random(f"{seed}/{gauge.topic}/{k}")  # a str seed is hashed the same in every process
    return gauge.measure(rng, shift(gauge, k * gauge.period_s))


def _simulate(port: int, stop: threading.Event, seed: int) -> None:
    """Publish the gauges' readings at QoS 1 until ``stop``."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="spc-demo-gauges")
    client.connect(HOST, port)
    client.loop_start()
    step = 0
    while not stop.wait(TICK_S):
        for gauge in GAUGES:
            every = round(gauge.period_s / TICK_S)
            if step % every == 0:
                client.publish(gauge.topic, reading(gauge, step // every, seed), qos=1)
        step += 1
    client.disconnect()
    client.loop_stop()


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _behaviour(gauge: Gauge) -> str:
    if gauge.drift_start_s is None:
        return "in control"
    return (f"drifts for {DRIFT_S:.0f} s every {CYCLE_S / 60:g} min from {_minutes(gauge.drift_start_s)}, "
            "then recovers")


def banner(port: int, ws_port: int, database: str, configs: list[CharacteristicConfig], dashboard: str) -> str:
    """What the demo prints once the bridge is connected: where things are and what to type."""
    width = max(len(g.topic) for g in GAUGES)
    gauges = "\n".join(
        f"    {g.topic:<{width}}  {c.id} {c.name} ({c.chart}), every {g.period_s:g} s, {_behaviour(g)}; "
        f"e.g. {g.example}" for g, c in zip(GAUGES, configs))
    events = [sample_topic(ANY_CHARACTERISTIC), violation_topic(ANY_CHARACTERISTIC),
              f"{limits_topic(ANY_CHARACTERISTIC)} (retained)", ack_topic(ANY_CHARACTERISTIC), STATE_TOPIC]
    return (
        f"spc-bridge demo: embedded broker on mqtt://{HOST}:{port} and ws://{HOST}:{ws_port}/mqtt "
        f"(localhost only, no passwords)\n"
        f"  dashboard: {dashboard}/ (log in with any user name: the demo broker has no passwords)\n"
        f"  data: {database}\n"
        f"  gauges publish on (topic, characteristic, reading):\n{gauges}\n"
        f"  publish a reading yourself ({SHAFT.example} is beyond the limits of characteristic "
        f"{SHAFT.config['id']}):\n"
        f"    mosquitto_pub -h {HOST} -p {port} -q 1 -t {SHAFT.topic} -m {SHAFT.example}\n"
        f"  events: {', '.join(events)}\n"
        f"  watch them:  spc-bridge tail --broker mqtt://{HOST}:{port}\n"
        f"           or: mosquitto_sub -h {HOST} -p {port} -v -t '{violation_topic(ANY_CHARACTERISTIC)}' "
        f"-t '{sample_topic(ANY_CHARACTERISTIC)}'\n"
        f"  Ctrl-C stops it."
    )


def run_demo(port: int, ws_port: int, db_url: str | None, stop: threading.Event,
             seed: int | None = None, dashboard_port: int = 8080) -> int:
    """Run everything until ``stop`` (Ctrl-C); the exit code.

    Without ``db_url`` the data goes to a new SQLite file in a temporary folder, deleted at exit;
    without ``seed``, the gauges use DEFAULT_SEED.
    """
    seed = DEFAULT_SEED if seed is None else seed
    configs = [CharacteristicConfig.model_validate(g.config) for g in GAUGES]
    with ExitStack() as cleanup:
        if db_url is None:
            folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="spc-demo-"))
            db_url = f"sqlite:///{Path(folder) / 'demo.db'}"
            database = f"{db_url} (temporary, deleted at exit; --db URL keeps the data)"
        else:
            database = f"{shown(db_url)} (kept)"
        cleanup.enter_context(BrokerThread(HOST, port, ws_port))
        dashboard = cleanup.enter_context(DashboardServer(HOST, dashboard_port, f"ws://{HOST}:{ws_port}/mqtt"))
        settings = Settings(broker=parse_broker_url(f"mqtt://{HOST}:{port}"), db_url=db_url,
                            config_path=Path("demo"), client_id="spc-bridge-demo")
        bridge = Bridge(settings, configs)
        failures: list[BaseException] = []

        def run() -> None:
            try:
                bridge.run(stop)
            except BaseException as error:  # re-raised below, where the command line reports it
                failures.append(error)
                stop.set()

        gauges = threading.Thread(target=_simulate, args=(port, stop, seed), daemon=True)
        runner = threading.Thread(target=run, name="bridge")
        runner.start()
        for _ in range(50):  # the banner and the gauges once the bridge listens, or after 10 s anyway
            if bridge.ready.wait(0.2) or not runner.is_alive():
                break
        if runner.is_alive():
            print(banner(port, ws_port, database, configs, dashboard.base_url), flush=True)
        gauges.start()
        while runner.is_alive():
            runner.join(0.2)
        gauges.join(5)
        if failures:
            raise failures[0]
    print("spc-bridge demo: stopped", flush=True)
    return 0
