"""Gauges: processes that publish a source's messages (``sources.py``; the bridge's own JSON readings
``{"value", "ts", "seq"}`` by default) at a paced or full rate, with a share of poison messages
(``poison.py``) in place of JSON readings if asked.

Each gauge process publishes on its share of the workload's streams (round robin), with ``seq``
unique across the whole run and, in JSON, ``ts`` the wall-clock time of publication, which the
bridge echoes as the sample event's ``timestamp`` and the relay as ``ts``: the subscriber's
latency is its receipt time minus ``ts``. Run as ``python -m bridge.bench.load``: it connects,
sends its source's opening messages (Sparkplug births), prints ``ready``, starts when a line
arrives on stdin, prints one JSON result line once the broker has acknowledged every message,
and at the next line sends its closing messages (Sparkplug deaths) and disconnects.
"""

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.bench.brokers import client_id
from bridge.bench.poison import KINDS, Mix, Mixer, Slot, parse_kinds
from bridge.bench.processes import python
from bridge.bench.sources import KINDS as SOURCE_KINDS, Message, now_iso, reading_payload
from bridge.bench.workload import Workload
from bridge.config import parse_broker_url

PACE_S = 0.002           # a paced gauge publishes what is due, then sleeps this long at most
ACK_TIMEOUT_S = 120.0    # how long a gauge waits for the broker's last PUBACKs
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Load:
    """What a set of gauges publishes: ``count`` messages (0: until ``duration``) at ``rate``
    messages per second in all (0: as fast as they can), from ``gauges`` processes; ``poison``
    replaces that share of them with poison messages."""

    gauges: int
    seq_base: int
    count: int = 0
    rate: float = 0.0
    duration: float = 0.0
    qos: int = 1
    poison: Mix | None = None


@dataclass(frozen=True)
class LoadResult:
    """How many good readings the gauges published (a message of a batched source carries many),
    the highest seq, when (wall clock) the first and the last message went, and the poison messages
    among them by kind."""

    published: int
    last_seq: int
    first: float
    last: float
    poison: Counter[str]

    @property
    def rate(self) -> float:
        """The rate the gauges achieved."""
        return self.published / max(self.last - self.first, 1e-9)


class _Gauge:
    """One paho client publishing at QoS 0 or 1 with at most ``window`` messages in flight."""

    def __init__(self, url: str, client_id: str, qos: int, window: int) -> None:
        broker = parse_broker_url(url)
        self.qos = qos
        self.window = window
        self.outstanding = 0
        self.changed = threading.Condition()
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  transport=broker.transport, protocol=paho.MQTTv311)
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.max_inflight_messages_set(0)  # publish() bounds it; paho's window costs O(window)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: (
            None if reason.is_failure else self.connected.set())
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(START_TIMEOUT_S):
            raise TimeoutError(f"gauge {client_id}: no CONNACK from {broker}")

    def _on_publish(self, _c: paho.Client, _u: object, _mid: int, _rc: object, _p: object) -> None:
        with self.changed:
            self.outstanding -= 1
            self.changed.notify_all()

    def publish(self, topic: str, payload: str | bytes) -> None:
        if self.qos:
            with self.changed:
                while self.outstanding >= self.window:
                    if not self.changed.wait(ACK_TIMEOUT_S):
                        raise TimeoutError("no PUBACK from the broker")
                self.outstanding += 1
        self.client.publish(topic, payload, qos=self.qos)

    def drain(self) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self.outstanding <= 0, ACK_TIMEOUT_S):
                raise TimeoutError(f"{self.outstanding} messages without PUBACK")

    def send(self, messages: list[Message]) -> None:
        """Publish ``messages`` and wait until the broker has acknowledged them."""
        for message in messages:
            self.publish(message.topic, message.payload)
        self.drain()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_one(url: str, topic: str, seq: int) -> None:
    """Publish one reading at QoS 1 from the calling process and wait for its PUBACK."""
    gauge = _Gauge(url, client_id(url, f"probe-{seq}"), 1, 1)
    try:
        gauge.publish(topic, reading_payload(seq, random.Random(seq), now_iso()))
        gauge.drain()
    finally:
        gauge.close()


def _run(args: argparse.Namespace) -> None:
    workload = Workload(args.characteristics, args.source, args.per_message, args.epoch_ms)
    every = workload.streams()
    streams = every[args.index % len(every)::args.gauges]
    source = workload.sender(args.seq_base + args.index)
    gauge = _Gauge(args.broker, client_id(args.broker, f"gauge-{args.index}-{args.seq_base}"), args.qos,
                   args.window)
    rng = random.Random(args.seq_base + args.index)
    mixer = Mixer(Mix(args.poison, parse_kinds(args.poison_kinds)), args.index)
    last = ("", 0)  # the topic and seq of the last good reading
    gauge.send(source.opening(streams))
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    first = time.time()
    end = start + args.duration if args.duration else float("inf")
    k = published = 0
    while (not args.count or k < args.count) and time.monotonic() < end:
        if args.rate:
            due = (time.monotonic() - start) * args.rate
            if k >= due:
                time.sleep(min(PACE_S, (k + 1 - due) / args.rate))
                continue
        stream, seq = streams[k % len(streams)], args.seq_base + args.index + k * args.gauges
        if mixer.due(k):
            gauge.publish(*mixer.message(Slot(source.topic(stream), seq, now_iso(), *last)))
        else:
            message = source.message(stream, seq, rng)
            gauge.publish(message.topic, message.payload)
            published += message.readings
            last = (message.topic, seq)
        k += 1
    done = time.time()
    gauge.drain()
    last_seq = args.seq_base + args.index + (k - 1) * args.gauges
    print(json.dumps({"published": published, "last_seq": last_seq, "first": first,
                      "last": done, "poison": mixer.sent}), flush=True)
    # The embedded broker (amqtt) acknowledges a reading before routing it, and forgets what it has
    # not routed yet when its publisher disconnects: stay until the benchmark has the events.
    sys.stdin.readline()
    gauge.send(source.closing(streams))
    gauge.close()


@contextmanager
def run_load(url: str, workload: Workload, load: Load, window: int = 100,
             ready: Callable[[], None] | None = None) -> Iterator[LoadResult]:
    """Start ``load.gauges`` gauge processes, call ``ready()`` once each has connected and sent its
    opening messages, let them publish together and yield what they published; they stay connected
    until the ``with`` block ends."""
    n = load.gauges
    poison = load.poison or Mix(0.0)
    procs = [subprocess.Popen(python("bridge.bench.load", "--broker", url, "--source", workload.kind,
                                     "--characteristics", str(workload.characteristics),
                                     "--per-message", str(workload.per_message),
                                     "--epoch-ms", str(workload.epoch_ms),
                                     "--index", str(i), "--gauges", str(n),
                                     "--seq-base", str(load.seq_base),
                                     "--count", str(load.count // n + (i < load.count % n)),
                                     "--rate", str(load.rate / n), "--duration", str(load.duration),
                                     "--qos", str(load.qos), "--window", str(window),
                                     "--poison", str(poison.fraction),
                                     "--poison-kinds", ",".join(poison.kinds)),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(n)]
    try:
        for proc in procs:
            line = _line(proc, START_TIMEOUT_S)
            if line.strip() != "ready":
                raise RuntimeError(f"gauge did not start: {line!r}")
        if ready is not None:
            ready()
        _tell(procs)
        limit = (load.duration or load.count / 1000) + ACK_TIMEOUT_S
        results = [json.loads(_line(proc, limit)) for proc in procs]
        yield LoadResult(sum(r["published"] for r in results), max(r["last_seq"] for r in results),
                         min(r["first"] for r in results), max(r["last"] for r in results),
                         sum((Counter(r["poison"]) for r in results), Counter()))
        _tell(procs)
        for proc in procs:
            proc.wait(ACK_TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _tell(procs: Sequence["subprocess.Popen[str]"]) -> None:
    """Send each gauge the line it waits for (start, or disconnect and exit)."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def _line(proc: "subprocess.Popen[str]", timeout: float) -> str:
    """The next line the gauge prints, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        raise TimeoutError(f"gauge {proc.pid} said nothing within {timeout:.0f} s")
    if not result[0]:
        raise RuntimeError(f"gauge {proc.pid} exited with {proc.wait(10)}")
    return result[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one gauge process."""
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.load")
    parser.add_argument("--broker", required=True)
    parser.add_argument("--source", choices=SOURCE_KINDS, default="json")
    parser.add_argument("--characteristics", type=int, required=True)
    parser.add_argument("--per-message", type=int, default=1)
    parser.add_argument("--epoch-ms", type=int, default=0)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--gauges", type=int, default=1)
    parser.add_argument("--seq-base", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--qos", type=int, default=1)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--poison", type=float, default=0.0)
    parser.add_argument("--poison-kinds", default=",".join(KINDS))
    _run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
