"""The MQTT answer to the seed's heartbeat and stale cleanup: each broker drops a client silent for 1.5 times
its keep-alive and publishes its last will (as the bridge's ``spc/bridge/state`` = ``offline`` would be)."""

import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import BrokerHandle, MqttProbe
from tests.credentials import password

WILL_TOPIC = "line/keepalive/will"  # the gauge test user may publish on line/#


@pytest.mark.serial
def test_broker_drops_a_silent_client_and_publishes_its_will(broker: BrokerHandle) -> None:
    """Keep-alive 1 s, then silence (no PINGREQ): the will arrives within a few seconds (on the embedded broker
    thanks to broker/amqtt_fixes.py: amqtt 0.12.1 itself never drops a silent client)."""
    with MqttProbe(broker, user="admin") as watcher:
        watcher.subscribe(WILL_TOPIC)
        silent = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        silent.username_pw_set("gauge", password("gauge"))
        silent.will_set(WILL_TOPIC, b"gone", qos=1)
        silent.connect(broker.host, broker.port, keepalive=1)
        silent.loop_start()
        deadline = time.monotonic() + 5
        while not silent.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert silent.is_connected()
        silent.loop_stop()  # the socket stays open, but nothing is sent on it any more
        started = time.monotonic()
        try:
            wills = watcher.wait_for(WILL_TOPIC, 1, timeout=6)
            assert [m.payload for m in wills] == [b"gone"]
            assert time.monotonic() - started < 5
        finally:
            sock = silent.socket()
            if sock is not None:
                sock.close()
