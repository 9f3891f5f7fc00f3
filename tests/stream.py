"""A stream of QoS 1 readings from several gauges and a persistent event recorder, with the checks
that nothing was lost or doubled: for the fault tests (kill -9, broker restarts, outages)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import BrokerHandle
from tests.processes import BRIDGE_CLIENT_ID, ChildProcess, bridge_process
from tests.credentials import password

# Five gauges, one per characteristic, each identifying its readings differently.
CONFIG = """
[[characteristic]]
id = 1
name = "with seq"
topic = "line/seq"
chart = "imr"
baseline = 10

[[characteristic]]
id = 2
name = "with seq (id key)"
topic = "line/id"
chart = "imr"
baseline = 10

[[characteristic]]
id = 3
name = "timestamped, no seq"
topic = "line/ts"
chart = "imr"
baseline = 10

[[characteristic]]
id = 4
name = "bare numbers, often equal"
topic = "line/bare"
chart = "imr"
baseline = 10

[[characteristic]]
id = 5
name = "single values collected into subgroups"
topic = "line/bore"
chart = "xbar_r"
subgroup_size = 4
baseline = 5
"""
ONLINE = ": online"  # the end of the bridge's line once every subscription is granted
TOPICS = {1: "line/seq", 2: "line/id", 3: "line/ts", 4: "line/bare", 5: "line/bore"}
KEYLESS = (4, 5)  # the characteristics whose readings carry neither a seq, an id nor a ts


def payload(characteristic: int, k: int, rng: random.Random) -> str:
    """The k-th reading of a gauge."""
    value = round(rng.gauss(10.0, 1.0), 3)
    if characteristic == 1:
        return json.dumps({"value": value, "seq": k})
    if characteristic == 2:
        return json.dumps({"value": value, "id": f"r-{k}"})
    if characteristic == 3:
        return json.dumps({"value": value, "ts": f"2026-11-26T10:00:00.{k:06d}Z"})
    if characteristic == 4:
        return str(rng.choice([9.5, 10.0, 10.5]))  # equal payloads back to back
    return f"{value}"


def write_config(tmp_path: Path) -> Path:
    """The characteristics file of the stream."""
    path = tmp_path / "stream.toml"
    path.write_text(CONFIG)
    return path


class Gauges:
    """Publishes ``total`` readings round-robin over the five topics at QoS 1 from a thread, as the gauge user."""

    def __init__(self, broker: BrokerHandle, total: int, rate: float, seed: int = 1) -> None:
        self.total = total
        self.rate = rate
        self.sent: dict[int, list[str]] = {c: [] for c in TOPICS}
        self.done = threading.Event()
        self.published = 0
        self._rng = random.Random(seed)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gauge:stream-{seed}",
                                  clean_session=False)
        self.client.max_inflight_messages_set(100)
        self.client.username_pw_set("gauge", password("gauge"))
        self._acked: set[int] = set()
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Start publishing."""
        self._thread.start()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, _rc: object, _p: object) -> None:
        with self._lock:
            self._acked.add(mid)

    def _run(self) -> None:
        # paho keeps what is published while the broker is away and sends it on reconnect, but its
        # wait_for_publish() raises for those: count the PUBACKs instead.
        mids = []
        start = time.monotonic()
        for k in range(self.total):
            characteristic = 1 + k % len(TOPICS)
            body = payload(characteristic, k, self._rng)
            self.sent[characteristic].append(body)
            mids.append(self.client.publish(TOPICS[characteristic], body, qos=1).mid)
            self.published = k + 1
            delay = start + (k + 1) / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with self._lock:
                if self._acked.issuperset(mids):
                    self.done.set()
                    return
            time.sleep(0.05)

    def wait(self, timeout: float) -> None:
        """Wait until every reading was acknowledged by the broker."""
        assert self.done.wait(timeout), f"gauges published {self.published} of {self.total}"

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Recorder:
    """A persistent-session subscriber of every sample and violation event, as the dashboard user."""

    broker: BrokerHandle
    events: list[tuple[str, dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dashboard:recorder",
                                  clean_session=False)
        self.client.username_pw_set("dashboard", password("dashboard"))
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe([("spc/+/sample", 1), ("spc/+/violation", 1)])
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "recorder could not subscribe"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.events.append((message.topic, json.loads(message.payload)))

    def ids(self, kind: str, characteristic: int) -> list[int]:
        """Ids of the events of one kind for one characteristic, in arrival order, repeats included."""
        key = "sample_id" if kind == "sample" else "violation_id"
        with self.lock:
            return [e[key] for t, e in self.events if t == f"spc/{characteristic}/{kind}"]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def streaming(broker: BrokerHandle, tmp_path: Path, readings: int, rate: float,
              gauge_broker: BrokerHandle | None = None, options: Sequence[str] = ()
              ) -> Iterator[tuple[ChildProcess, Gauges, Recorder, str]]:
    """A bridge on a SQLite file on ``broker`` with ``options``, started and holding every subscription; a
    recorder of its events and gauges ready to stream, on ``gauge_broker`` (a node of the same cluster;
    default ``broker``); the database URL. All of them are stopped afterwards."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = bridge_process(tmp_path, broker.url("bridge"), db, write_config(tmp_path), BRIDGE_CLIENT_ID, *options)
    bridge.ready_line = ONLINE
    with ExitStack() as stack:
        bridge.start()
        stack.callback(bridge.stop)
        recorder = Recorder(gauge_broker or broker)
        stack.callback(recorder.close)
        gauges = Gauges(gauge_broker or broker, readings, rate)
        stack.callback(gauges.close)
        yield bridge, gauges, recorder, db


def query(db_url: str, sql: str) -> list[tuple]:
    """Rows of a query on the bridge's database."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def wait_until(check: "callable[[], bool]", timeout: float, what: str) -> None:
    """Poll ``check`` until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def missing_keyless(gauges: Gauges, db_url: str) -> Counter[tuple[int, float]]:
    """The readings without a key that were sent and are not stored, by (characteristic, value): those
    stored at least as often as sent are not missing, however many more times they were stored."""
    stored = Counter((cid, json.loads(m)[0]) for cid, m in query(
        db_url, f"select characteristic_id, measurements from readings "
                f"where characteristic_id in ({', '.join(map(str, KEYLESS))})"))
    return Counter((cid, float(p)) for cid in KEYLESS for p in gauges.sent[cid]) - stored


def _same_order(cid: int, stored: list[str], sent: list[str], ordered: bool) -> None:
    """The readings were stored once each, in the order the gauge sent them if ``ordered``."""
    if not ordered:
        assert Counter(stored) == Counter(sent), f"characteristic {cid}: readings differ"
    elif stored != sent:
        at = next(i for i, (a, b) in enumerate(zip(stored, sent)) if a != b)
        raise AssertionError(f"characteristic {cid}: stored order differs from sent order at {at}: "
                             f"stored {stored[at - 2:at + 6]}, sent {sent[at - 2:at + 6]}")


def assert_nothing_lost_or_doubled(gauges: Gauges, recorder: Recorder, db_url: str,
                                   timeout: float = 60.0, gauge_order: bool = True) -> None:
    """Every reading stored exactly once (in the gauge's order if ``gauge_order``); every sample
    and violation event received at least once, in order per characteristic, and none that the
    database does not hold."""
    wait_until(lambda: query(db_url, "select count(*) from readings")[0][0] >= gauges.total,
               timeout, "all readings in the database")
    for cid in TOPICS:
        stored = query(db_url, f"select seq, ts, measurements from readings "
                               f"where characteristic_id = {cid} order by id")
        sent = gauges.sent[cid]
        assert len(stored) == len(sent), f"characteristic {cid}: {len(stored)} stored, {len(sent)} sent"
        if cid == 1:
            _same_order(cid, [s for s, _, _ in stored], [str(json.loads(p)["seq"]) for p in sent],
                        gauge_order)
        elif cid == 2:
            _same_order(cid, [s for s, _, _ in stored], [json.loads(p)["id"] for p in sent],
                        gauge_order)
        elif cid == 3:
            _same_order(cid, [t for _, t, _ in stored], [json.loads(p)["ts"] for p in sent],
                        gauge_order)
        else:
            assert Counter(json.loads(m)[0] for _, _, m in stored) == Counter(float(p) for p in sent)
    samples_per_char = {cid: [r[0] for r in query(
        db_url, f"select id from samples where characteristic_id = {cid} order by idx")]
        for cid in TOPICS}
    assert len(samples_per_char[5]) == len(gauges.sent[5]) // 4
    violations_per_char = {cid: sorted(r[0] for r in query(
        db_url, f"select id from violations where characteristic_id = {cid}")) for cid in TOPICS}

    def received_all() -> bool:
        return all(set(recorder.ids("sample", c)) >= set(samples_per_char[c]) and
                   set(recorder.ids("violation", c)) >= set(violations_per_char[c]) for c in TOPICS)

    wait_until(received_all, timeout, "every event at the subscriber")
    for cid in TOPICS:
        for kind, stored_ids in (("sample", samples_per_char[cid]), ("violation", violations_per_char[cid])):
            received = recorder.ids(kind, cid)
            first_seen = list(dict.fromkeys(received))
            assert first_seen == sorted(first_seen), f"{kind} events of {cid} out of order"
            assert set(first_seen) == set(stored_ids), f"{kind} events of {cid}: invented or missing"
