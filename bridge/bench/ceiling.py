"""The ceiling of any Python consumer: a bare paho subscriber draining the bridge's backlog from the same broker.

It subscribes to the bridge's ingest roots on a persistent session and does nothing with a message but count
it (paho acknowledges each QoS 1 message itself), so its drain is what paho and the broker allow on this
machine; the bridge's drain is judged against it (``ceiling_ratio``). Run as ``python -m bridge.bench.ceiling``:
it prints ``SUBSCRIBED`` once the broker has its subscriptions (then exits when ``--count`` is 0), else, after
``--count`` messages, one JSON line: when it connected and when the last message came (wall clock).
"""

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.bench.processes import Child, python
from bridge.bench.workload import read_topics
from bridge.config import parse_broker_url
from bridge.service.subscriptions import derive_roots

SUBSCRIBED = "SUBSCRIBED"
TIMEOUT_S = 30.0
COUNT_TIMEOUT_S = 600.0


class CeilingSystem:
    """The ceiling subscriber as a child process: ``subscribe`` creates its session, ``drain`` times it."""

    name = "ceiling"

    def __init__(self, workdir: Path, url: str, config: Path, client_id: str) -> None:
        self.url, self.client_id = url, client_id
        self._config, self._log = config, workdir / f"{client_id}.log"

    def _child(self, count: int) -> Child:
        return Child(python("bridge.bench.ceiling", "--broker", self.url, "--config", str(self._config),
                            "--client-id", self.client_id, "--count", str(count)), self._log)

    def subscribe(self) -> None:
        """Create the persistent session with its subscriptions, then disconnect (the broker queues from now)."""
        child = self._child(0)
        child.start(lambda: SUBSCRIBED in child.output(), TIMEOUT_S)
        if child.proc is not None and child.proc.wait(TIMEOUT_S) != 0:
            raise RuntimeError(f"the ceiling subscriber failed:\n{child.output()[-3000:]}")

    def drain(self, count: int) -> tuple[float, float]:
        """Connect, take ``count`` queued messages, disconnect: when it connected and when the last came."""
        child = self._child(count)
        child.start(lambda: "}" in child.output(), COUNT_TIMEOUT_S)
        child.stop()
        times = json.loads(child.output().strip().splitlines()[-1])
        return float(times["connected"]), float(times["last"])


def _consume(url: str, topics: list[str], client_id: str, count: int) -> None:
    broker = parse_broker_url(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                         protocol=paho.MQTTv311)
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    done, connected, last, received = threading.Event(), [0.0], [0.0], [0]

    def on_connect(c: paho.Client, _u: object, flags: paho.ConnectFlags, reason: object, _p: object) -> None:
        connected[0] = time.time()
        if count == 0:
            c.subscribe([(root, 1) for root in derive_roots(topics)])

    def on_message(_c: paho.Client, _u: object, _m: paho.MQTTMessage) -> None:
        received[0] += 1
        if received[0] == count:
            last[0] = time.time()
            done.set()

    def on_subscribe(*_: object) -> None:
        print(SUBSCRIBED, flush=True)
        done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect(broker.host, broker.port, keepalive=60)
    client.loop_start()
    try:
        if not done.wait(TIMEOUT_S if count == 0 else COUNT_TIMEOUT_S):
            raise TimeoutError(f"the ceiling subscriber got {received[0]:,} of {count:,} messages")
    finally:
        client.disconnect()
        client.loop_stop()
    if count:
        print(json.dumps({"connected": connected[0], "last": last[0], "count": received[0]}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ceiling subscriber's process."""
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.ceiling")
    parser.add_argument("--broker", required=True, help="broker URL")
    parser.add_argument("--config", required=True, help="characteristics file: its topics")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--count", type=int, default=0, help="messages to take (0: only subscribe)")
    args = parser.parse_args(argv)
    _consume(args.broker, read_topics(Path(args.config)), args.client_id, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
