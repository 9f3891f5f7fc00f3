"""Vendor JSON end to end on both brokers and both databases (a Kepware IoT Gateway message of ten tags feeding ten
characteristics in one delivery, stored once however often it comes, acknowledged only once all ten are committed;
a Node-RED message), and hypothesis on the decoders of the many-readings sources: bridge.service.decoders.PathDecoder
and bridge.service.sparkplug_decoder.SparkplugDecoder never raise, and a bad protobuf is a refusal that says so."""

import json
import sqlite3
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from bridge.assemble import Assembler
from bridge.config import CharacteristicConfig, Settings, SparkplugSource
from bridge.service.decoders import Decoding, PathDecoder
from bridge.service.listener import SPARKPLUG
from bridge.service.messages import Inbound
from bridge.service.registry import Characteristic
from bridge.service.sparkplug_decoder import Binding, SparkplugDecoder
from bridge.service.status import StatusBoard
from bridge.sparkplug.host import MetricKey, SparkplugHost
from bridge.sparkplug.payload import BDSEQ, DataType, Metric, PayloadError, encode_payload
from bridge.sparkplug.topics import MESSAGE_TYPES, device_topic, node_topic
from tests.brokers import BrokerHandle, MqttProbe
from tests.processes import ChildProcess, bridge_process
from tests.sparkplug_peer import now_ms
from tests.stream import query, wait_until

KEPWARE = "t/iotgateway"
NODE_RED = "t/nodered/bore"
TAGS = [f"Channel1.Device1.Tag{i}" for i in range(1, 11)]  # characteristic i reads tag i
CONFIG = "".join(f"""
[[characteristic]]
id = {cid}
name = "Kepware {tag}"
topic = "{KEPWARE}"
value_path = "values[?id=='{tag}'].v | [0]"
timestamp_path = "values[?id=='{tag}'].t | [0]"
timestamp_unit = "ms"
quality_path = "values[?id=='{tag}'].q | [0]"
chart = "imr"
""" for cid, tag in enumerate(TAGS, 1)) + f"""
[[characteristic]]
id = 11
name = "Bore diameter, Node-RED"
topic = "{NODE_RED}"
value_path = "bore"
timestamp_path = "time"
chart = "imr"
"""
KEPWARE_IDS = list(range(1, 11))
WAIT = 20.0


def kepware_message(stamps: list[int], values: list[float]) -> bytes:
    """What a Kepware IoT Gateway agent publishes: each tag with its value, quality and time (ms since 1970)."""
    return json.dumps({"timestamp": max(stamps), "values": [
        {"id": tag, "v": value, "q": True, "t": stamp} for tag, value, stamp in zip(TAGS, values, stamps)]}).encode()


def _of_ms(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp / 1000, timezone.utc)


def _kepware_readings(database: str) -> list[tuple[int, str, str, Any]]:
    """(characteristic, ts, measurements, received_at) of the Kepware characteristics' readings, in order."""
    return query(database, "select characteristic_id, ts, measurements, received_at from readings "
                           "where characteristic_id <= 10 order by characteristic_id, id")


@pytest.fixture
def bridge(broker: BrokerHandle, database: str, tmp_path: Path) -> Iterator[ChildProcess]:
    """The bridge with the ten Kepware characteristics and the Node-RED one, subscribed (online)."""
    config = tmp_path / "vendor.toml"
    config.write_text(CONFIG)
    process = bridge_process(tmp_path, broker.url("bridge"), database, config)
    try:
        _start(process)
        yield process
    finally:
        process.stop()


def _start(bridge: ChildProcess) -> None:
    bridge.start()
    wait_until(lambda: ": online" in bridge.output(), WAIT, "the bridge subscribed")


def test_kepware_and_node_red_messages(broker: BrokerHandle, database: str, bridge: ChildProcess) -> None:
    """One Kepware message of ten tags is one delivery (one received_at) feeding ten characteristics, each reading
    and sample stamped with its own tag's time; the same message again stores and publishes nothing (each
    reading's key is its timestamp); a Node-RED message gives its value and its ISO time."""
    start = now_ms() - 60_000
    stamps = [start + 1000 * i for i in range(10)]
    values = [74.0 + i / 100 for i in range(10)]
    message = kepware_message(stamps, values)
    with MqttProbe(broker, user="admin") as probe:
        probe.subscribe("spc/+/sample")
        probe.publish(KEPWARE, message)
        for cid in KEPWARE_IDS:
            probe.wait_for(f"spc/{cid}/sample", 1, timeout=WAIT)
        probe.publish(KEPWARE, message)  # a resend
        probe.publish(NODE_RED, json.dumps({"bore": 74.5, "time": "2026-12-01T12:00:00.000Z"}))
        [sample] = probe.wait_for("spc/11/sample", 1, timeout=WAIT)
        assert json.loads(sample.payload)["value"] == 74.5
        samples = [[json.loads(m.payload) for m in probe.received(f"spc/{cid}/sample")] for cid in KEPWARE_IDS]
    assert [[datetime.fromisoformat(sample["timestamp"]) for sample in each] for each in samples] == [
        [_of_ms(stamp)] for stamp in stamps], "one sample each, at its tag's time"
    rows = _kepware_readings(database)
    assert [cid for cid, *_ in rows] == KEPWARE_IDS
    assert [datetime.fromisoformat(ts) for _, ts, _, _ in rows] == [_of_ms(stamp) for stamp in stamps]
    assert [json.loads(measurements) for _, _, measurements, _ in rows] == [[value] for value in values]
    assert len({received_at for *_, received_at in rows}) == 1, "not one delivery"
    [(ts, measurements)] = query(database, "select ts, measurements from readings where characteristic_id = 11")
    assert (datetime.fromisoformat(ts), json.loads(measurements)) == (
        datetime(2026, 12, 1, 12, tzinfo=timezone.utc), [74.5])
    assert query(database, "select count(*) from rejects") == [(0,)]


@contextmanager
def _commits_refused(database: str) -> Iterator[None]:
    """While in the block, the database refuses to commit the bridge's readings as a database that must be waited
    out (the bridge then keeps the batch and retries it, unacknowledged). PostgreSQL: a trigger refuses only
    characteristic 10's reading, with lock_not_available, after the nine others of the same INSERT went in.
    SQLite: another connection holds the write lock, as a busy database would (the bridge waits its busy timeout,
    10 s, then retries)."""
    if make_url(database).get_backend_name() == "sqlite":
        lock = sqlite3.connect(str(make_url(database).database), isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            yield
        finally:
            lock.close()
        return
    url = make_url(database).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("CREATE FUNCTION refuse_ten() RETURNS trigger AS $$ BEGIN"
                      " IF NEW.characteristic_id = 10 THEN"
                      " RAISE EXCEPTION 'characteristic 10 is locked' USING ERRCODE = 'lock_not_available';"
                      " END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
        admin.execute("CREATE TRIGGER refuse_ten BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION refuse_ten()")
        try:
            yield
        finally:
            admin.execute("DROP TRIGGER refuse_ten ON readings")
            admin.execute("DROP FUNCTION refuse_ten()")


# Redelivery is the broker's part, so both brokers are crashed on; the SQLite case costs the bridge's busy timeout
# (10 s), so it runs on one of them.
@pytest.mark.parametrize(("broker", "database"), [("embedded", "postgresql"), ("mosquitto", "postgresql"),
                                                  ("mosquitto", "sqlite")], indirect=True)
def test_a_message_is_acknowledged_only_once_all_ten_have_committed(broker: BrokerHandle, database: str,
                                                                    bridge: ChildProcess) -> None:
    """A crash test. While the database refuses the commit of a ten-tag message (see _commits_refused: on
    PostgreSQL only the tenth characteristic's reading is refused, after the ten samples and nine readings of the
    same transaction were written), the bridge has the message (its log says the batch waits for a retry), and
    none of the ten readings or samples is stored or published. Then kill -9: had the bridge acknowledged the
    message before all ten were committed, the broker would have dropped it and nothing would ever be stored.
    Restarted on its persistent session, with the database accepting again, the bridge gets the message again
    from the broker and stores and publishes all ten, once each, from that one delivery."""
    stamps = [now_ms() - 60_000 + i for i in range(10)]
    message = kepware_message(stamps, [10.0 + i for i in range(10)])
    # the outbox holds the start-up's limits events until they are confirmed and deleted: a SQLite write that would
    # wait for the lock too (and delay the batch by a busy timeout)
    wait_until(lambda: query(database, "select count(*) from outbox") == [(0,)], WAIT, "the outbox emptied")
    with MqttProbe(broker, user="admin") as probe:
        probe.subscribe("spc/+/sample")
        with _commits_refused(database):
            probe.publish(KEPWARE, message)  # QoS 1: the broker has it for the bridge's session
            wait_until(lambda: "wait to be retried" in bridge.output(), WAIT, "the bridge holding the batch")
            bridge.kill()
        assert (_kepware_readings(database), query(database, "select count(*) from samples")) == ([], [(0,)])
        assert probe.messages == []
        _start(bridge)
        for cid in KEPWARE_IDS:
            probe.wait_for(f"spc/{cid}/sample", 1, timeout=WAIT)
    rows = _kepware_readings(database)
    assert [cid for cid, *_ in rows] == KEPWARE_IDS
    assert [datetime.fromisoformat(ts) for _, ts, _, _ in rows] == [_of_ms(stamp) for stamp in stamps]
    assert len({received_at for *_, received_at in rows}) == 1, "not one delivery"
    assert query(database, "select count(*) from samples") == [(10,)]
    assert query(database, "select count(*) from rejects") == [(0,)]


# --- hypothesis on the decoders ----------------------------------------------------------------------------------

NOW = datetime.now(timezone.utc)
T0 = now_ms() - 3_600_000


def _characteristic(config: CharacteristicConfig) -> Characteristic:
    """The run-time characteristic of ``config``, as Pipeline.start makes it."""
    spec = config.chart_spec()
    return Characteristic(config.id, spec, Assembler(spec))


PATH_CONFIGS = [CharacteristicConfig.model_validate(table) for table in tomllib.loads(CONFIG)["characteristic"]
                if table["topic"] == KEPWARE]
SPARKPLUG_CONFIGS = [
    CharacteristicConfig(id=1, name="node metric", chart="imr",
                         sparkplug=SparkplugSource(group_id="Plant1", edge_node_id="Line3", metric="Bore")),
    CharacteristicConfig(id=2, name="device count", chart="p", subgroup_size=20,
                         sparkplug=SparkplugSource(group_id="Plant1", edge_node_id="Line3", device_id="Gauge7",
                                                   metric="Rejects", n_metric="Inspected")),
]


def _path_decoder() -> PathDecoder:
    """The decoder of the Kepware topic, as Pipeline.start builds it."""
    selections = []
    for config in PATH_CONFIGS:
        paths = config.field_paths()
        assert paths is not None
        selections.append((_characteristic(config), paths))
    return PathDecoder(selections, Settings.max_payload)


def _sparkplug_decoder() -> SparkplugDecoder:
    """The Sparkplug decoder of SPARKPLUG_CONFIGS on a real host, as Pipeline.start builds it."""
    bindings = []
    for config in SPARKPLUG_CONFIGS:
        source = config.sparkplug
        assert source is not None
        key = MetricKey(source.group_id, source.edge_node_id, source.device_id, source.metric)
        n_key = None if source.n_metric is None else MetricKey(source.group_id, source.edge_node_id,
                                                               source.device_id, source.n_metric)
        bindings.append(Binding(_characteristic(config), key, n_key))
    return SparkplugDecoder(SparkplugHost(reorder_timeout_s=0.5), bindings, StatusBoard())


def _inbound(topic: str, payload: bytes) -> Inbound:
    return Inbound(topic, payload, NOW, None, 1)


def _check_decoding(decoding: Decoding, ids: set[int]) -> None:
    """What a decoder gives is well formed: readings of its own characteristics, refusals with a reason."""
    assert all(d.characteristic.id in ids for d in decoding.readings)
    assert all(isinstance(r.reason, str) and r.reason and r.kind for r in decoding.refusals)
    assert all(e.topic.startswith("spc/") for e in decoding.events)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=15)
TAG = st.fixed_dictionaries({  # a tag as Kepware sends it, or one with any of its fields missing or of any value
    "id": st.sampled_from(TAGS), "v": st.floats(-1e6, 1e6) | st.integers(-10**6, 10**6), "q": st.just(True),
    "t": st.integers(T0, T0 + 10**6)}) | st.fixed_dictionaries({}, optional={
        "id": st.sampled_from(TAGS) | st.text(max_size=6) | JSON, "v": JSON, "q": st.booleans() | JSON,
        "t": st.integers(T0, T0 + 10**6) | JSON})
KEPWARE_SHAPED = st.fixed_dictionaries({"values": st.lists(TAG, max_size=12) | JSON}, optional={"timestamp": JSON})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | (JSON | KEPWARE_SHAPED).map(lambda doc: json.dumps(doc, allow_nan=True).encode()))
def test_the_path_decoder_never_raises(payload: bytes) -> None:
    """Any payload on a vendor JSON topic is, for each of its ten characteristics, a reading or a refusal naming
    that characteristic; or one refusal of the whole message."""
    decoding = _path_decoder().decode(_inbound(KEPWARE, payload))
    _check_decoding(decoding, set(KEPWARE_IDS))
    whole = [r for r in decoding.refusals if not r.reason.startswith("characteristic ")]
    if whole:
        assert (len(whole), len(decoding.refusals), decoding.readings) == (1, 1, [])
        return
    refused = [int(r.reason.split(":")[0].removeprefix("characteristic ")) for r in decoding.refusals]
    assert sorted(refused + [d.characteristic.id for d in decoding.readings]) == KEPWARE_IDS


LEVEL = st.sampled_from(["Plant1", "Line3", "Gauge7", "STATE", "", "+", "#", *MESSAGE_TYPES]) | st.text(max_size=6)
TOPIC = st.one_of(  # any message type of the node or its devices (with or without a device), any levels
    st.builds(node_topic, st.just("Plant1"), st.sampled_from(MESSAGE_TYPES), st.just("Line3")),
    st.builds(device_topic, st.just("Plant1"), st.sampled_from(MESSAGE_TYPES), st.just("Line3"),
              st.sampled_from(["Gauge7", "Gauge8"])),
    st.lists(LEVEL, max_size=5).map(lambda levels: "/".join(["spBv1.0", *levels])))
NAMES = st.sampled_from(["Bore", "Rejects", "Inspected", BDSEQ, "Node Control/Rebirth", "Other", ""])
VALUES = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=5)
          | st.binary(max_size=5))
METRIC = st.builds(Metric, name=st.none() | NAMES, alias=st.none() | st.integers(0, 6),
                   timestamp=st.none() | st.integers(T0, T0 + 10**6) | st.integers(0, 2**64 - 1),
                   datatype=st.none() | st.sampled_from(list(DataType)) | st.integers(0, 50), value=VALUES,
                   is_null=st.booleans(), is_historical=st.booleans())


def _encoded(parts: tuple[int | None, int | None, list[Metric]]) -> bytes:
    """A payload of ``parts`` (timestamp, seq, metrics), or b"" where a value does not fit its field."""
    try:
        return encode_payload(*parts)
    except PayloadError:
        return b""


ENCODED = st.tuples(st.none() | st.integers(T0, T0 + 10**6), st.none() | st.integers(0, 3) | st.integers(0, 2**64 - 1),
                    st.lists(METRIC, max_size=6)).map(_encoded)


def _data(device: bool) -> st.SearchStrategy[tuple[str, bytes]]:
    """DATA of the node (alias 1) or of its device (aliases 2 and 3) as an edge node sends it: by born alias, any
    seq, numbers; ``_encoded`` is total here, as every value fits its field."""
    metric = st.builds(Metric, name=st.none(), alias=st.sampled_from([2, 3] if device else [1]),
                       timestamp=st.integers(T0, T0 + 10**6), datatype=st.none(),
                       value=st.integers(-5, 30) | st.floats(-1e3, 1e3))
    topic = device_topic("Plant1", "DDATA", "Line3", "Gauge7") if device else node_topic("Plant1", "NDATA", "Line3")
    return st.tuples(st.just(topic), st.tuples(st.none(), st.integers(0, 255), st.lists(metric, max_size=4))
                     .map(_encoded))


MESSAGE = _data(False) | _data(True) | st.tuples(TOPIC, ENCODED | st.binary(max_size=200))
# Bytes no protobuf parser takes, after any whole payload: a tag of wire type 6 or 7 (there are none), a varint cut
# short at the end, a length-delimited field (metrics, 2) longer than what follows.
INVALID = st.one_of(
    st.tuples(st.sampled_from([b"\x0e", b"\x0f", b"\x16", b"\x17"]), st.binary(max_size=20)).map(b"".join),
    st.integers(1, 9).map(lambda k: b"\x08" + b"\x80" * k),
    st.integers(2, 100).map(lambda n: b"\x12" + bytes([n]) + b"\x00" * (n - 1)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(MESSAGE, max_size=8), st.booleans()), max_size=6))
def test_the_sparkplug_decoder_never_raises(batches: list[tuple[list[tuple[str, bytes]], bool]]) -> None:
    """Batches of arbitrary topics under spBv1.0/ and arbitrary or protobuf payloads, after the node's births:
    every message decodes to readings, refusals and status events, never an exception; a batch rolled back (as
    when its commit fails) decodes the same when run again; the host's timeouts and a lost connection never raise
    either."""
    decoder = _sparkplug_decoder()
    ids = {c.id for c in SPARKPLUG_CONFIGS}
    births = [(node_topic("Plant1", "NBIRTH", "Line3"), encode_payload(T0, 0, [
                  Metric(BDSEQ, None, T0, DataType.Int64, 0), Metric("Bore", 1, T0, DataType.Double, 1.0)])),
              (device_topic("Plant1", "DBIRTH", "Line3", "Gauge7"), encode_payload(T0, 1, [
                  Metric("Rejects", 2, T0, DataType.Int32, 0), Metric("Inspected", 3, T0, DataType.Int32, 20)]))]
    for batch, fails in [(births, False), *batches]:
        decoder.begin()
        decoded = [decoder.decode(_inbound(topic, payload)) for topic, payload in batch]
        for decoding in decoded:
            _check_decoding(decoding, ids)
        if fails:
            decoder.rollback()
            decoder.begin()
            assert [decoder.decode(_inbound(topic, payload)) for topic, payload in batch] == decoded
        decoder.commit()
        decoder.take_rebirths()
        decoder.due()
    for event in decoder.connection_lost("gone"):
        assert event.topic in ("spc/1/status", "spc/2/status")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH"]), st.just(b"") | ENCODED,
       INVALID)
def test_a_bad_protobuf_is_a_refusal_that_says_so(kind: str, start: bytes, bad: bytes) -> None:
    """Bytes that are not protobuf, after nothing or after a whole payload, on a node or device topic: no reading, one
    refusal of the Sparkplug class whose reason says it is no Sparkplug B (protobuf) payload."""
    topic = node_topic("Plant1", kind, "Line3") if kind.startswith("N") else device_topic("Plant1", kind, "Line3",
                                                                                           "Gauge7")
    decoding = _sparkplug_decoder().decode(_inbound(topic, start + bad))
    assert decoding.readings == [] and len(decoding.refusals) == 1, decoding
    [(reason, kind_of)] = decoding.refusals
    assert "not a Sparkplug B payload (protobuf)" in reason and kind_of == SPARKPLUG
