"""``spc-bridge demo``: embedded broker, bridge, SQLite and three simulated gauges on one laptop.

Characteristic 1 stays in control (X-bar/R from single bore measurements), characteristic 2
drifts once its baseline is complete so that run and trend rules fire, characteristic 3 is an
attribute (p) chart of rejects among 50 parts.
"""

import random
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.config import CharacteristicConfig, Settings, parse_broker_url
from bridge.service.runner import Bridge
from broker.embedded import BrokerThread

HOST = "127.0.0.1"
BASELINE = 20
DEMO: list[dict[str, object]] = [
    {"id": 1, "name": "Bore diameter, line 1", "topic": "demo/line1/bore", "chart": "xbar_r",
     "subgroup_size": 5, "baseline": BASELINE, "usl": 74.05, "lsl": 73.95},
    {"id": 2, "name": "Shaft length, line 2", "topic": "demo/line2/shaft", "chart": "imr",
     "baseline": BASELINE, "usl": 25.3, "lsl": 24.7},
    {"id": 3, "name": "Solder rejects, line 3", "topic": "demo/line3/solder", "chart": "p",
     "subgroup_size": 50, "baseline": BASELINE},
]


def _gauges(rng: random.Random) -> list[tuple[str, float, Callable[[int], str]]]:
    """(topic, period in seconds, payload of the k-th reading) for each simulated gauge."""
    def bore(k: int) -> str:
        return f"{rng.gauss(74.0, 0.01):.4f}"

    def shaft(k: int) -> str:
        drift = max(0, k - BASELINE - 10) * 0.004
        return f"{rng.gauss(25.0, 0.05) + drift:.4f}"

    def solder(k: int) -> str:
        rejects = sum(rng.random() < 0.06 for _ in range(50))
        return f'{{"count": {rejects}, "n": 50}}'

    return [("demo/line1/bore", 0.1, bore), ("demo/line2/shaft", 0.2, shaft),
            ("demo/line3/solder", 0.5, solder)]


def _simulate(port: int, stop: threading.Event) -> None:
    """Publish the gauges' readings at QoS 1 until ``stop``."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="spc-demo-gauges")
    client.connect(HOST, port)
    client.loop_start()
    gauges = _gauges(random.Random(7))
    tick = 0.1
    counts = [0] * len(gauges)
    step = 0
    while not stop.wait(tick):
        step += 1
        for i, (topic, period, payload) in enumerate(gauges):
            if step % round(period / tick) == 0:
                client.publish(topic, payload(counts[i]), qos=1)
                counts[i] += 1
    client.disconnect()
    client.loop_stop()


def run_demo(port: int, ws_port: int, db_url: str, stop: threading.Event) -> int:
    """Run everything until ``stop`` (Ctrl-C); the exit code."""
    configs = [CharacteristicConfig.model_validate(c) for c in DEMO]
    with BrokerThread(HOST, port, ws_port):
        settings = Settings(broker=parse_broker_url(f"mqtt://{HOST}:{port}"), db_url=db_url,
                            config_path=Path("demo"), client_id="spc-bridge-demo")
        bridge = Bridge(settings, configs)
        print(f"spc-bridge demo: embedded broker on mqtt://{HOST}:{port} and "
              f"ws://{HOST}:{ws_port}/mqtt (localhost only, no passwords), database {db_url}\n"
              f"  characteristics: " + "; ".join(f"{c.id} {c.name} ({c.chart})" for c in configs) +
              f"\n  watch it:  spc-bridge tail --broker mqtt://{HOST}:{port}\n"
              f"         or: mosquitto_sub -h {HOST} -p {port} -t 'spc/#' -v\n"
              f"  Ctrl-C stops it.", flush=True)
        gauges = threading.Thread(target=_simulate, args=(port, stop), daemon=True)
        runner = threading.Thread(target=bridge.run, args=(stop,))
        runner.start()
        bridge.ready.wait(10)
        gauges.start()
        while runner.is_alive():
            runner.join(0.2)
        gauges.join(5)
    print("spc-bridge demo: stopped", flush=True)
    return 0
