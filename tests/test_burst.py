"""A burst of 20,000 QoS 1 events to a subscriber that is away loses nothing through
mosquitto.conf; a SIGTERM mid-stream finishes the work in hand and loses nothing either."""

import signal
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import MosquittoProcess
from tests.credentials import password
from tests.processes import bridge_process
from tests.stream import Gauges, Recorder, assert_nothing_lost_or_doubled, query, wait_until, write_config

READINGS = 24_000  # four gauges of single values and one of subgroups of 4: 20,400 sample events
SAMPLES = READINGS // 5 * 4 + READINGS // 5 // 4


def test_burst_of_20000_events_to_an_absent_subscriber(mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    """The subscriber's persistent session queues all 20,000 sample events (Mosquitto's default
    max_queued_messages, 1000, would silently drop 19,000 of them)."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = bridge_process(tmp_path, mosquitto.url("bridge"), db,
                            write_config(tmp_path))
    recorder = Recorder(mosquitto)
    recorder.close()  # away: its session and subscriptions stay with the broker
    bridge.start()
    gauges = Gauges(mosquitto, READINGS, 10_000.0)
    try:
        gauges.start()
        gauges.wait(120)
        assert SAMPLES >= 20_000
        wait_until(lambda: query(db, "select count(*) from samples")[0][0] == SAMPLES, 120,
                   "every sample committed")
        wait_until(lambda: query(db, "select count(*) from outbox")[0][0] == 0, 60,
                   "every event confirmed by the broker")
        recorder = Recorder(mosquitto)  # back, slowly
        assert_nothing_lost_or_doubled(gauges, recorder, db, timeout=120)
    finally:
        gauges.close()
        recorder.close()
        bridge.stop()


def test_sigterm_mid_stream_loses_nothing(mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    """SIGTERM: the bridge commits what it holds, publishes offline and exits 0; restarted, it
    goes on where it stopped."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = bridge_process(tmp_path, mosquitto.url("bridge"), db,
                            write_config(tmp_path))
    bridge.start()
    recorder = Recorder(mosquitto)
    states: list[bytes] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    watcher.username_pw_set("dashboard", password("dashboard"))
    watcher.on_message = lambda _c, _u, m: states.append(m.payload)
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe("spc/bridge/state", 1)
    watcher.loop_start()
    gauges = Gauges(mosquitto, 3000, 1500.0)
    try:
        gauges.start()
        time.sleep(1.0)
        assert bridge.stop(signal.SIGTERM) == 0
        wait_until(lambda: states[-1:] == [b"offline"], 10, "offline state")
        bridge.start()
        gauges.wait(60)
        assert_nothing_lost_or_doubled(gauges, recorder, db)
    finally:
        watcher.disconnect()
        watcher.loop_stop()
        gauges.close()
        recorder.close()
        bridge.stop()
