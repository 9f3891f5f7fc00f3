"""The Sparkplug host application's state machine on real encoded payloads: births and aliases, typed values, seq
order and the reorder timeout, rebirth requests and their throttle, deaths and liveness, and the undo log."""

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.sparkplug.host import HostOutput, MetricKey, MetricValue, NodeRef, SparkplugHost
from bridge.sparkplug.payload import (BDSEQ, REBIRTH_METRIC, DataType, Metric, PayloadError, Value, decode_payload,
                                      encode_payload)
from bridge.sparkplug.topics import device_topic, node_topic, state_topic

GROUP, NODE, DEVICE = "Plant1", "Line3", "Gauge7"
REF = NodeRef(GROUP, NODE)
T0 = 1_764_590_400_000
BORE = Metric(name="Bore/Diameter", alias=1, timestamp=T0, datatype=DataType.Double, value=74.0)
OFFSET = Metric(name="Offset", alias=2, timestamp=T0, datatype=DataType.Int32, value=0)
DEPTH = Metric(name="Depth", alias=10, timestamp=T0, datatype=DataType.Float, value=1.5)


def by_alias(alias: int, number: Value, timestamp: int | None = T0, field: str | None = None, is_null: bool = False,
             is_historical: bool = False) -> Metric:
    """A DATA metric as the specification wants it: alias only, no name, no datatype."""
    return Metric(name=None, alias=alias, timestamp=timestamp, datatype=None, value=number, field=field,
                  is_null=is_null, is_historical=is_historical)


def send(host: SparkplugHost, kind: str, seq: int | None, metrics: list[Metric], *, device: str | None = None,
         node: str = NODE, now: float = 0.0, timestamp: int | None = T0) -> HostOutput:
    """Publish one message of `kind` to the host, its payload encoded as an edge node would."""
    topic = node_topic(GROUP, kind, node) if device is None else device_topic(GROUP, kind, node, device)
    return host.on_message(topic, encode_payload(timestamp, seq, metrics), now)


def nbirth(host: SparkplugHost, metrics: list[Metric], *, bdseq: int = 0, node: str = NODE, now: float = 0.0,
           seq: int = 0) -> HostOutput:
    """An NBIRTH with its bdSeq and Node Control/Rebirth metrics, then `metrics`."""
    control = [Metric(name=BDSEQ, alias=None, timestamp=T0, datatype=DataType.Int64, value=bdseq),
               Metric(name=REBIRTH_METRIC, alias=None, timestamp=T0, datatype=DataType.Boolean, value=False)]
    return send(host, "NBIRTH", seq, control + metrics, node=node, now=now)


def ndeath(host: SparkplugHost, bdseq: int, now: float = 0.0) -> HostOutput:
    """An NDEATH (no seq) with its bdSeq."""
    return send(host, "NDEATH", None, [Metric(name=BDSEQ, alias=None, timestamp=None, datatype=DataType.Int64,
                                              value=bdseq)], now=now)


def born(metrics: list[Metric] | None = None, device_metrics: list[Metric] | None = None,
         reorder_timeout_s: float = 2.0) -> SparkplugHost:
    """A host that has seen the node's NBIRTH (seq 0) and, given `device_metrics`, the device's DBIRTH (seq 1)."""
    host = SparkplugHost(reorder_timeout_s=reorder_timeout_s)
    assert nbirth(host, [BORE, OFFSET] if metrics is None else metrics).rejects == []
    if device_metrics is not None:
        assert send(host, "DBIRTH", 1, device_metrics, device=DEVICE).live == [(REF, DEVICE)]
    return host


def value(name: str, number: Value, device: str | None = None, timestamp: int = T0, historical: bool = False,
          datatype: int | None = DataType.Double) -> MetricValue:
    """The MetricValue the host should emit."""
    return MetricValue(MetricKey(GROUP, NODE, device, name), number, timestamp, historical, datatype)


def quiet(out: HostOutput) -> bool:
    """Nothing asked of the caller but values."""
    return not (out.rebirths or out.stale or out.live or out.rejects)


# Births and values


def test_a_birth_makes_the_node_live_and_emits_no_value_then_data_by_alias_is_typed() -> None:
    """An NBIRTH describes (live, no values); NDATA by alias measures, typed by the birth's datatypes."""
    host = SparkplugHost()
    birth = nbirth(host, [BORE, OFFSET])
    assert birth.live == [(REF, None)] and birth.values == []
    assert (birth.rebirths, birth.rejects, birth.stale) == ([], [], [])
    out = send(host, "NDATA", 1, [by_alias(1, 74.01, timestamp=T0 + 5), by_alias(2, 4294967291)])
    assert quiet(out)
    assert out.values == [value("Bore/Diameter", 74.01, timestamp=T0 + 5),
                          value("Offset", -5, datatype=DataType.Int32)]


def test_negative_int32_on_the_wire_keeps_its_sign_given_only_the_births_datatype() -> None:
    """Int32 -5 arrives as 4294967291 in int_value, without a datatype: the birth's Int32 gives -5."""
    host = born()
    wire = Metric(name=None, alias=2, timestamp=T0, datatype=None, value=4294967291, field="int_value")
    [decoded] = decode_payload(encode_payload(T0, 1, [wire])).metrics
    assert (decoded.value, decoded.datatype) == (4294967291, None)
    assert send(host, "NDATA", 1, [wire]).values == [value("Offset", -5, datatype=DataType.Int32)]


def test_int64_float_double_and_boolean_come_out_typed() -> None:
    """Int64 two's complement, Float as its shortest decimal, Double and Boolean as sent."""
    births = [Metric(name="Count", alias=3, timestamp=T0, datatype=DataType.Int64, value=0),
              Metric(name="Temp", alias=4, timestamp=T0, datatype=DataType.Float, value=0.0),
              Metric(name="Bore", alias=5, timestamp=T0, datatype=DataType.Double, value=0.0),
              Metric(name="Ok", alias=6, timestamp=T0, datatype=DataType.Boolean, value=False)]
    host = born(births)
    out = send(host, "NDATA", 1, [by_alias(3, (1 << 64) - 7, field="long_value"), by_alias(4, 74.01),
                                  by_alias(5, 74.012345678901), by_alias(6, True)])
    assert [(v.key.metric, v.value, v.datatype) for v in out.values] == [
        ("Count", -7, DataType.Int64), ("Temp", 74.01, DataType.Float), ("Bore", 74.012345678901, DataType.Double),
        ("Ok", True, DataType.Boolean)]


def test_data_by_name_and_the_payload_timestamp_when_the_metric_has_none() -> None:
    """A metric by its born name; without its own timestamp it takes the payload's."""
    host = born()
    metric = Metric(name="Bore/Diameter", alias=None, timestamp=None, datatype=None, value=74.5)
    out = send(host, "NDATA", 1, [metric], timestamp=T0 + 99)
    assert quiet(out) and out.values == [value("Bore/Diameter", 74.5, timestamp=T0 + 99)]


def test_a_metric_with_no_timestamp_anywhere_is_a_reject_of_its_own() -> None:
    """No timestamp on the metric nor on the payload: that metric is rejected, its neighbours kept."""
    host = born()
    out = send(host, "NDATA", 1, [by_alias(1, 74.5, timestamp=None), by_alias(2, 3)], timestamp=None)
    assert out.rejects == ["NDATA from Plant1/Line3: metric 'Bore/Diameter' has no timestamp, nor has its payload"]
    assert out.values == [value("Offset", 3, datatype=DataType.Int32)] and out.rebirths == []


def test_null_values_are_skipped_and_historical_ones_kept_as_historical() -> None:
    """is_null emits nothing; is_historical comes out with its own (old) timestamp."""
    host = born()
    out = send(host, "NDATA", 1, [by_alias(1, None, is_null=True), by_alias(1, 73.9, timestamp=T0 - 60_000,
                                                                             is_historical=True)])
    assert quiet(out) and out.values == [value("Bore/Diameter", 73.9, timestamp=T0 - 60_000, historical=True)]


def test_values_that_are_not_numbers_come_out_as_sent_with_their_datatype() -> None:
    """String, DataSet, array and misfit values are emitted as sent, with their datatype, for the caller to judge."""
    births = [Metric(name="Label", alias=3, timestamp=T0, datatype=DataType.String, value=""),
              Metric(name="Table", alias=4, timestamp=T0, datatype=DataType.DataSet, value=None,
                     field="dataset_value"),
              Metric(name="Raw", alias=5, timestamp=T0, datatype=DataType.Int32Array, value=b""),
              Metric(name="Untyped", alias=6, timestamp=T0, datatype=None, value=4294967291, field="int_value"),
              OFFSET]
    host = born(births)
    out = send(host, "NDATA", 1, [by_alias(3, "lot 7"), by_alias(4, None, field="dataset_value"),
                                  by_alias(5, b"\x01\x00\x00\x00", field="bytes_value"),
                                  by_alias(6, 4294967291, field="int_value"), by_alias(2, "7", field="string_value")])
    assert quiet(out)
    assert [(v.key.metric, v.value, v.datatype) for v in out.values] == [
        ("Label", "lot 7", DataType.String), ("Table", None, DataType.DataSet),
        ("Raw", b"\x01\x00\x00\x00", DataType.Int32Array), ("Untyped", 4294967291, None),
        ("Offset", "7", DataType.Int32)]


def test_device_data_by_alias_with_aliases_unique_across_the_node() -> None:
    """DDATA by a DBIRTH's alias; an alias belongs to its own birth only."""
    host = born(device_metrics=[DEPTH])
    out = send(host, "DDATA", 2, [by_alias(10, 2.25)], device=DEVICE)
    assert quiet(out) and out.values == [value("Depth", 2.25, device=DEVICE, datatype=DataType.Float)]
    # The device's alias is not the node's, nor the node's the device's.
    node_side = send(host, "NDATA", 3, [by_alias(10, 1.0)], now=0.1)
    assert node_side.rejects == ["NDATA from Plant1/Line3: alias 10 was never born"]
    device_side = send(host, "DDATA", 4, [by_alias(1, 1.0)], device=DEVICE, now=0.2)
    assert device_side.rejects == ["DDATA from Plant1/Line3/Gauge7: alias 1 was never born"]


def test_a_dbirth_may_not_take_an_alias_of_the_node_or_of_another_device() -> None:
    """Aliases are unique across the edge node: a DBIRTH taking another birth's alias is refused."""
    host = born(device_metrics=[DEPTH])
    taken = Metric(name="Speed", alias=1, timestamp=T0, datatype=DataType.Double, value=0.0)
    out = send(host, "DBIRTH", 2, [taken], device="Gauge8")
    assert out.rejects == ["DBIRTH of Plant1/Line3/Gauge8 gives alias 1 to both 'Bore/Diameter' and "
                           "'Speed' of device Gauge8"]
    assert out.rebirths == [REF] and out.live == []
    again = send(host, "DBIRTH", 3, [Metric(name="Speed", alias=10, timestamp=T0, datatype=DataType.Double,
                                            value=0.0)], device="Gauge8")
    assert again.rejects == ["DBIRTH of Plant1/Line3/Gauge8 gives alias 10 to both 'Depth' of device Gauge7 and "
                             "'Speed' of device Gauge8"]
    # A device born again redefines its own aliases.
    reborn = send(host, "DBIRTH", 4, [Metric(name="Depth2", alias=10, timestamp=T0, datatype=DataType.Double,
                                             value=0.0)], device=DEVICE)
    assert reborn.live == [(REF, DEVICE)] and reborn.rejects == []
    assert send(host, "DDATA", 5, [by_alias(10, 3.0)], device=DEVICE).values == [
        value("Depth2", 3.0, device=DEVICE)]


def test_a_birth_giving_one_alias_to_two_metrics_is_rejected_with_a_rebirth_request() -> None:
    """One alias for two metrics in an NBIRTH: a reject naming both, a rebirth request, no birth."""
    host = SparkplugHost()
    twin = Metric(name="Bore/Radius", alias=1, timestamp=T0, datatype=DataType.Double, value=37.0)
    out = nbirth(host, [BORE, twin])
    assert out.rejects == ["NBIRTH of Plant1/Line3 gives alias 1 to both 'Bore/Diameter' and 'Bore/Radius'"]
    assert out.rebirths == [REF] and out.live == []
    # The node stays unborn: its data is refused, the rebirth request not repeated within the timeout.
    data = send(host, "NDATA", 1, [by_alias(1, 74.0)], now=0.5)
    assert data.rejects == ["NDATA from Plant1/Line3 before its birth"] and data.rebirths == []


def test_a_birth_metric_without_a_name_is_rejected() -> None:
    """A birth must name every metric it declares."""
    out = nbirth(SparkplugHost(), [Metric(name=None, alias=7, timestamp=T0, datatype=DataType.Double, value=1.0)])
    assert out.rejects == ["NBIRTH of Plant1/Line3 has a metric without a name (alias 7)"] and out.rebirths == [REF]


def test_an_nbirth_needs_seq_0_and_a_bdseq() -> None:
    """An NBIRTH with seq other than 0, or without bdSeq, is refused with a rebirth request."""
    host = SparkplugHost()
    out = nbirth(host, [BORE], seq=4)
    assert out.rejects == ["NBIRTH of Plant1/Line3 has seq 4, not 0"] and out.rebirths == [REF] and out.live == []
    no_bdseq = send(SparkplugHost(), "NBIRTH", 0, [BORE])
    assert no_bdseq.rejects == ["NBIRTH of Plant1/Line3 has no integer bdSeq metric"]
    assert no_bdseq.rebirths == [REF]


def test_an_oversized_birth_is_rejected_without_a_rebirth_request() -> None:
    """More metrics than max_birth_metrics: refused; asking again would bring the same birth."""
    host = SparkplugHost(max_birth_metrics=3)
    out = nbirth(host, [BORE, OFFSET])
    assert out.rejects == ["NBIRTH of Plant1/Line3 has 4 metrics, more than the limit of 3"]
    assert out.rebirths == [] and out.live == []
    assert nbirth(host, [BORE]).live == [(REF, None)]
    device = send(host, "DBIRTH", 1, [DEPTH, OFFSET, BORE, DEPTH], device=DEVICE)
    assert device.rejects == ["DBIRTH of Plant1/Line3/Gauge7 has 4 metrics, more than the limit of 3"]


def test_a_rejected_birth_of_a_live_node_makes_it_stale() -> None:
    """A live node (or device) whose new birth is refused is stale until an accepted birth."""
    host = born(device_metrics=[DEPTH])
    out = nbirth(host, [BORE], seq=3, now=5.0)
    assert out.stale == [(REF, None, "NBIRTH of Plant1/Line3 has seq 3, not 0")]
    host = born(device_metrics=[DEPTH])
    twin = Metric(name="Other", alias=10, timestamp=T0, datatype=DataType.Double, value=0.0)
    bad = send(host, "DBIRTH", 2, [DEPTH, twin], device=DEVICE)
    assert bad.stale == [(REF, DEVICE, bad.rejects[0])]
    assert send(host, "DDATA", 3, [by_alias(10, 1.0)], device=DEVICE, now=5.0).rejects == [
        "DDATA from Plant1/Line3/Gauge7 before its birth"]


def test_an_nbirth_forgets_the_devices_until_their_dbirth() -> None:
    """After an NBIRTH a device's data is refused until its DBIRTH comes again."""
    host = born(device_metrics=[DEPTH])
    assert nbirth(host, [BORE]).live == [(REF, None)]
    out = send(host, "DDATA", 1, [by_alias(10, 2.0)], device=DEVICE)
    assert out.rejects == ["DDATA from Plant1/Line3/Gauge7 before its birth"] and out.rebirths == [REF]
    assert send(host, "DBIRTH", 2, [DEPTH], device=DEVICE).live == [(REF, DEVICE)]
    assert send(host, "DDATA", 3, [by_alias(10, 2.0)], device=DEVICE).values == [
        value("Depth", 2.0, device=DEVICE, datatype=DataType.Float)]


def test_unknown_alias_and_name_are_rejected_by_name_the_rest_of_the_message_still_counts() -> None:
    """An alias or name never born is a reject naming it and a rebirth request, throttled to one per timeout."""
    host = born()
    stranger = Metric(name="Nope", alias=None, timestamp=T0, datatype=None, value=1.0)
    out = send(host, "NDATA", 1, [by_alias(9, 1.0), by_alias(1, 74.2), stranger])
    assert out.rejects == ["NDATA from Plant1/Line3: alias 9 was never born",
                           "NDATA from Plant1/Line3: metric 'Nope' was never born"]
    assert out.values == [value("Bore/Diameter", 74.2)] and out.rebirths == [REF]
    # One rebirth request per reorder timeout, however many messages.
    assert send(host, "NDATA", 2, [by_alias(9, 1.0)], now=1.9).rebirths == []
    assert send(host, "NDATA", 3, [by_alias(9, 1.0)], now=2.0).rebirths == [REF]


def test_data_and_device_births_before_the_node_birth_ask_for_a_rebirth_at_most_once_per_timeout() -> None:
    """DATA, DBIRTH and DDEATH before the NBIRTH: rejects, and one rebirth request per node per timeout."""
    host = SparkplugHost(reorder_timeout_s=2.0)
    first = send(host, "NDATA", 17, [by_alias(1, 74.0)])
    assert first.rejects == ["NDATA from Plant1/Line3 before its birth"] and first.rebirths == [REF]
    assert first.values == []
    assert send(host, "DDATA", 18, [by_alias(10, 1.0)], device=DEVICE, now=1.0).rebirths == []
    device = send(host, "DBIRTH", 19, [DEPTH], device=DEVICE, now=1.5)
    assert device.rejects == ["DBIRTH from Plant1/Line3/Gauge7 before its birth"] and device.rebirths == []
    assert send(host, "DDEATH", 20, [], device=DEVICE, now=2.5).rebirths == [REF]
    other = send(host, "NDATA", 1, [], node="Line4", now=2.5)
    assert other.rebirths == [NodeRef(GROUP, "Line4")]


def test_data_without_a_seq_is_rejected() -> None:
    """NDATA must carry a seq."""
    out = send(born(), "NDATA", None, [by_alias(1, 74.0)])
    assert out.rejects == ["NDATA from Plant1/Line3 has no seq"] and out.values == [] and out.rebirths == [REF]


# Order


def test_seq_wraps_from_255_to_0_without_a_gap() -> None:
    """Node and device messages share one seq that wraps from 255 to 0 without a gap."""
    host = born(device_metrics=[DEPTH])
    for step in range(2, 600):
        kind, device = ("DDATA", DEVICE) if step % 3 else ("NDATA", None)
        alias = 10 if device else 1
        out = send(host, kind, step % 256, [by_alias(alias, float(step))], device=device, now=step / 1000)
        assert quiet(out) and len(out.values) == 1
    assert quiet(host.due(1000.0))


def test_a_gap_mended_by_the_late_message_within_the_timeout_asks_for_nothing() -> None:
    """A message after a gap is processed at once; the late one within the timeout stops the timer."""
    host = born()
    send(host, "NDATA", 1, [by_alias(1, 1.0)])
    ahead = send(host, "NDATA", 3, [by_alias(1, 3.0)], now=0.1)
    assert quiet(ahead) and ahead.values == [value("Bore/Diameter", 3.0)]  # nothing held back
    late = send(host, "NDATA", 2, [by_alias(1, 2.0)], now=1.5)
    assert quiet(late) and late.values == [value("Bore/Diameter", 2.0)]
    assert quiet(host.due(10.0))
    assert quiet(send(host, "NDATA", 4, [by_alias(1, 4.0)], now=10.0))


def test_a_gap_across_the_wrap_is_mended_by_its_late_messages() -> None:
    """Seqs 255 and 0 skipped, then arriving within the timeout: no rebirth."""
    host = born()
    for seq in range(1, 255):
        send(host, "NDATA", seq, [by_alias(1, 1.0)])
    assert quiet(send(host, "NDATA", 1, [by_alias(1, 1.0)], now=0.1))  # 255 and 0 skipped
    assert quiet(send(host, "NDATA", 0, [by_alias(1, 1.0)], now=0.2))
    assert quiet(host.due(2.05))
    assert quiet(send(host, "NDATA", 255, [by_alias(1, 1.0)], now=2.09))  # the timer ran from 0.1 to 2.1
    assert quiet(host.due(10.0))


def test_a_gap_never_mended_asks_for_one_rebirth_when_the_timeout_expires() -> None:
    """A seq never arriving: one rebirth request from due() when the timer expires, not one per gap."""
    host = born(reorder_timeout_s=2.0)
    send(host, "NDATA", 1, [by_alias(1, 1.0)])
    for seq, now in ((3, 0.1), (5, 0.2), (7, 0.3)):  # more gaps while the timer runs: still one timer
        assert quiet(send(host, "NDATA", seq, [by_alias(1, 1.0)], now=now))
    send(host, "NDATA", 2, [by_alias(1, 1.0)], now=0.4)  # one of the missing comes, 4 and 6 do not
    assert quiet(host.due(2.09))
    assert host.due(2.1).rebirths == [REF]
    assert quiet(host.due(2.2)) and quiet(host.due(60.0))


def test_a_repeated_seq_cannot_be_mended_and_asks_for_a_rebirth_after_the_timeout() -> None:
    """A seq from behind (a repeat) is processed, and asks for a rebirth when the timer expires."""
    host = born()
    send(host, "NDATA", 1, [by_alias(1, 1.0)])
    send(host, "NDATA", 2, [by_alias(1, 2.0)])
    again = send(host, "NDATA", 1, [by_alias(1, 1.0)], now=0.5)
    assert quiet(again) and len(again.values) == 1
    assert quiet(send(host, "NDATA", 3, [by_alias(1, 3.0)], now=0.6))
    assert host.due(2.5).rebirths == [REF]


def test_a_new_birth_stops_the_reorder_timer() -> None:
    """An NBIRTH starts the seq over: a pending reorder timer is gone."""
    host = born()
    send(host, "NDATA", 5, [by_alias(1, 1.0)])
    assert nbirth(host, [BORE], now=1.0).live == [(REF, None)]
    assert quiet(host.due(5.0))


def test_a_reorder_timeout_of_zero_asks_at_once() -> None:
    """With a reorder timeout of 0 the first due() after a gap asks for a rebirth."""
    host = born(reorder_timeout_s=0.0)
    send(host, "NDATA", 2, [by_alias(1, 1.0)], now=3.0)
    assert host.due(3.0).rebirths == [REF]


# Liveness


def test_ndeath_with_the_births_bdseq_makes_node_and_devices_stale_and_forgets_the_node() -> None:
    """An NDEATH matching the birth's bdSeq: node and devices stale, the node unborn."""
    host = born(device_metrics=[DEPTH])
    out = ndeath(host, 0)
    assert out.stale == [(REF, None, "NDEATH")] and out.rejects == [] and out.rebirths == []
    data = send(host, "NDATA", 2, [by_alias(1, 1.0)])
    assert data.rejects == ["NDATA from Plant1/Line3 before its birth"]
    assert quiet(ndeath(host, 0))  # a second NDEATH of the same session: the node is already gone


def test_a_stale_will_from_an_earlier_session_is_ignored() -> None:
    """An NDEATH with an older bdSeq (or none) changes nothing."""
    host = SparkplugHost()
    nbirth(host, [BORE], bdseq=4)
    assert quiet(ndeath(host, 3))
    assert send(host, "NDATA", 1, [by_alias(1, 74.0)]).values == [value("Bore/Diameter", 74.0)]
    assert quiet(send(host, "NDEATH", None, []))  # no bdSeq at all
    assert ndeath(host, 4).stale == [(REF, None, "NDEATH")]


def test_ddeath_makes_its_device_stale_until_its_next_dbirth() -> None:
    """DDEATH: the device stale and its data refused until its DBIRTH; the node unaffected."""
    host = born(device_metrics=[DEPTH])
    out = send(host, "DDEATH", 2, [], device=DEVICE)
    assert out.stale == [(REF, DEVICE, "DDEATH")] and out.rejects == []
    assert send(host, "DDATA", 3, [by_alias(10, 1.0)], device=DEVICE).rejects == [
        "DDATA from Plant1/Line3/Gauge7 before its birth"]
    assert send(host, "NDATA", 4, [by_alias(1, 1.0)], now=5.0).values == [value("Bore/Diameter", 1.0)]
    assert send(host, "DBIRTH", 5, [DEPTH], device=DEVICE, now=5.0).live == [(REF, DEVICE)]


def test_a_lost_connection_makes_every_node_stale_and_forgets_every_birth() -> None:
    """connection_lost(): every node stale with the reason given; data afterwards waits for births."""
    host = born(device_metrics=[DEPTH])
    nbirth(host, [BORE], node="Line4")
    out = host.connection_lost("connection to the broker lost")
    assert sorted(out.stale, key=str) == [(REF, None, "connection to the broker lost"),
                                          (NodeRef(GROUP, "Line4"), None, "connection to the broker lost")]
    assert send(host, "NDATA", 2, [by_alias(1, 1.0)]).rejects == ["NDATA from Plant1/Line3 before its birth"]
    assert quiet(host.connection_lost("again"))


# Topics and payloads


def test_topics_and_payloads_that_are_not_sparkplug_are_rejects_commands_are_ignored() -> None:
    """Bad topics and payloads are rejects with their reason; NCMD, DCMD and STATE are not ours."""
    host = born()
    assert host.on_message("spBv1.0/Plant1/NFOO/Line3", b"", 0.0).rejects == [
        "not a Sparkplug topic: 'spBv1.0/Plant1/NFOO/Line3'"]
    assert host.on_message("spBv1.0/Plant1/DDATA/Line3", b"", 0.0).rejects == [
        "not a Sparkplug topic: 'spBv1.0/Plant1/DDATA/Line3'"]
    garbage = b"\xff\xff\xff"
    try:
        decode_payload(garbage)
    except PayloadError as error:
        reason = str(error)
    assert host.on_message(node_topic(GROUP, "NDATA", NODE), garbage, 0.0).rejects == [reason]
    for topic in (node_topic(GROUP, "NCMD", NODE), device_topic(GROUP, "DCMD", NODE, DEVICE), state_topic("scada")):
        assert quiet(host.on_message(topic, garbage, 0.0))
    assert send(host, "NDATA", 1, [by_alias(1, 74.0)]).values == [value("Bore/Diameter", 74.0)]


# Undo log


def test_rollback_restores_aliases_seq_devices_and_the_rebirth_throttle() -> None:
    """rollback() undoes a birth, seq, an unknown node's rebirth request: the retry sees the state of before."""
    host = born(device_metrics=[DEPTH])
    host.begin()
    other = Metric(name="Other", alias=1, timestamp=T0, datatype=DataType.Int32, value=0)
    nbirth(host, [other], bdseq=1)
    assert send(host, "NDATA", 1, [by_alias(1, 7)]).values == [value("Other", 7, datatype=DataType.Int32)]
    assert send(host, "NDATA", 9, [by_alias(1, 7)], node="Line9").rebirths == [NodeRef(GROUP, "Line9")]
    host.rollback()
    # As before begin(): the first birth's aliases, seq 2 next, the device born, no timer, nobody asked.
    assert quiet(send(host, "DDATA", 2, [by_alias(10, 1.0)], device=DEVICE))
    out = send(host, "NDATA", 3, [by_alias(1, 74.0)])
    assert quiet(out) and out.values == [value("Bore/Diameter", 74.0)]
    assert quiet(host.due(10.0))
    assert send(host, "NDATA", 9, [by_alias(1, 7)], node="Line9").rebirths == [NodeRef(GROUP, "Line9")]
    assert quiet(ndeath(host, 1))  # the rolled-back birth's bdSeq is not the current one


def test_commit_keeps_and_a_rollback_after_it_restores_only_the_next_batch() -> None:
    """commit() keeps a batch's changes; a later rollback() undoes only its own batch."""
    host = born()
    host.begin()
    send(host, "NDATA", 1, [by_alias(1, 1.0)])
    send(host, "NDATA", 3, [by_alias(1, 1.0)])  # a gap: the timer starts
    host.commit()
    host.begin()
    send(host, "NDATA", 2, [by_alias(1, 1.0)])  # mends it
    host.rollback()
    assert host.due(5.0).rebirths == [REF]
    host.rollback()  # without begin(): nothing to undo
    assert quiet(host.due(50.0))


def test_rollback_restores_a_node_forgotten_by_a_death_or_a_lost_connection() -> None:
    """An NDEATH and a lost connection inside a batch are undone by rollback()."""
    host = born()
    host.begin()
    ndeath(host, 0)
    host.connection_lost("gone")
    host.rollback()
    assert send(host, "NDATA", 1, [by_alias(1, 74.0)]).values == [value("Bore/Diameter", 74.0)]


# Never a crash


# Data more often than the rest, and mostly for the node and device that BIRTHS below gives birth to.
KINDS = ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH", "NCMD", "DCMD") + ("NDATA", "DDATA") * 4
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1), st.floats(), st.text(max_size=5),
                   st.binary(max_size=5))
FIELDS = st.sampled_from([None, "int_value", "long_value", "float_value", "double_value", "boolean_value",
                          "string_value", "bytes_value", "dataset_value", "template_value"])
NAMES = st.sampled_from([BDSEQ, REBIRTH_METRIC, "A", "Bore/Diameter", "Offset", "Depth"])
ALIASES = st.sampled_from([BORE.alias, OFFSET.alias, DEPTH.alias]) | st.integers(0, 12)


@st.composite
def metrics(draw: st.DrawFn, names: st.SearchStrategy[str | None], aliases: st.SearchStrategy[int | None]) \
        -> Metric:
    """A metric encode_payload can send, of any datatype, its value fitted to the field it travels in."""
    name, alias = draw(names), draw(aliases)
    field = draw(FIELDS)
    number = draw(VALUES)
    fitted = {"int_value": lambda: number if type(number) is int and 0 <= number < 1 << 32 else 1,
              "long_value": lambda: number if type(number) is int and number >= 0 else 2,
              "float_value": lambda: number if type(number) is float else 1.5,
              "double_value": lambda: number if type(number) is float else 2.5,
              "boolean_value": lambda: number if type(number) is bool else True,
              "string_value": lambda: number if type(number) is str else "s",
              "bytes_value": lambda: number if type(number) is bytes else b"b"}.get(field or "", lambda: None)()
    return Metric(name=name, alias=alias if name is not None or alias is not None else 1,
                  timestamp=draw(st.one_of(st.none(), st.integers(0, 1 << 50))),
                  datatype=draw(st.one_of(st.none(), st.sampled_from(list(DataType)), st.integers(0, 40))),
                  value=fitted, field=field, is_null=draw(st.booleans()), is_historical=draw(st.booleans()))


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """A topic and a payload encode_payload builds, as an edge node (sometimes a broken one) would send: births
    with names and aliases, often a bdSeq, seq near where it should be; data mostly by alias."""
    kind = draw(st.sampled_from(KINDS))
    node = draw(st.sampled_from([NODE, NODE, NODE, "L2"]))
    topic = node_topic(GROUP, kind, node) if kind.startswith("N") else \
        device_topic(GROUP, kind, node, draw(st.sampled_from([DEVICE, DEVICE, "D2"])))
    birth = kind.endswith("BIRTH")
    items = draw(st.lists(metrics(NAMES if birth else st.none() | NAMES, st.none() | ALIASES), max_size=5))
    if kind in ("NBIRTH", "NDEATH") and draw(st.integers(0, 4)):
        items.insert(0, Metric(name=BDSEQ, alias=None, timestamp=T0, datatype=DataType.Int64,
                               value=draw(st.integers(0, 2))))
    seq = draw(st.one_of(st.just(0) if kind == "NBIRTH" else st.integers(0, 6), st.none(), st.integers(0, 258)))
    return topic, encode_payload(draw(st.one_of(st.just(T0), st.none())), seq, items)


# Valid births first, so that much of what follows meets born nodes and devices.
BIRTHS = [("message", node_topic(GROUP, "NBIRTH", NODE), encode_payload(T0, 0, [
              Metric(name=BDSEQ, alias=None, timestamp=T0, datatype=DataType.Int64, value=0), BORE, OFFSET])),
          ("message", device_topic(GROUP, "DBIRTH", NODE, DEVICE), encode_payload(T0, 1, [DEPTH]))]
def steps(actions: list[str]) -> st.SearchStrategy[list[tuple[str, str, bytes]]]:
    """Messages (mostly plausible, some any text and bytes) mixed with calls of `actions`."""
    message = messages().map(lambda message: ("message", *message))
    return st.lists(st.one_of(
        message, message,
        st.tuples(st.just("message"), messages().map(lambda message: message[0]) | st.text(max_size=30),
                  st.binary(max_size=40)),
        st.tuples(st.sampled_from(actions), st.just(""), st.just(b""))), max_size=50)


def play(host: SparkplugHost, script: list[tuple[str, str, bytes]], start: float = 0.0) -> list[HostOutput]:
    """Run `script` on `host`, 0.1 s a step from `start`; what each message, due() or connection_lost() gave."""
    outputs = []
    for step, (action, topic, data) in enumerate(script, 1):
        now = start + step / 10
        if action == "message":
            outputs.append(host.on_message(topic, data, now))
        elif action == "due":
            outputs.append(host.due(now))
        elif action == "lost":
            outputs.append(host.connection_lost("lost"))
        else:
            getattr(host, action)()
    return outputs


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([[], BIRTHS[:1], BIRTHS]), steps(["due", "lost", "begin", "commit", "rollback"]))
def test_no_sequence_of_messages_timeouts_and_batches_makes_the_host_raise(
        births: list[tuple[str, str, bytes]], script: list[tuple[str, str, bytes]]) -> None:
    """Any messages, in any order, with timeouts, lost connections and batches: outputs, never an exception."""
    for out in play(SparkplugHost(reorder_timeout_s=0.5, max_birth_metrics=6), births + script):
        assert all(isinstance(reason, str) and reason for reason in out.rejects)
        assert all(isinstance(ref, NodeRef) for ref in out.rebirths)
        assert all(isinstance(v.timestamp, int) and isinstance(v.key.metric, str) for v in out.values)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([BIRTHS[:1], BIRTHS]), steps(["due"]), steps(["due", "lost"]), steps(["due"]))
def test_a_rolled_back_batch_leaves_no_trace(births: list[tuple[str, str, bytes]],
                                             prefix: list[tuple[str, str, bytes]],
                                             batch: list[tuple[str, str, bytes]],
                                             suffix: list[tuple[str, str, bytes]]) -> None:
    """After any batch rolled back, the host answers what follows as one that never saw the batch."""
    tried, untouched = (SparkplugHost(reorder_timeout_s=0.5, max_birth_metrics=6) for _ in range(2))
    play(tried, births + prefix)
    play(untouched, births + prefix)
    tried.begin()
    play(tried, batch, start=100.0)
    tried.rollback()
    retry = 100.0 + len(batch) / 10  # right after the batch, as a retry comes, its rebirth requests still recent
    assert play(tried, suffix, start=retry) == play(untouched, suffix, start=retry)


def test_a_birth_that_cannot_be_decoded_still_ends_the_birth_it_replaces() -> None:
    """An NBIRTH or DBIRTH refused by the decoder (too many metrics, not protobuf) starts no session, but the one
    it replaces is over: the node or device is stale, and its old aliases no longer count."""
    host = born(device_metrics=[DEPTH])
    device = host.on_message(f"spBv1.0/{GROUP}/DBIRTH/{NODE}/{DEVICE}", b"\xff not protobuf", 0.0)
    assert device.stale == [(REF, DEVICE, device.rejects[0])] and "protobuf" in device.rejects[0]
    node = host.on_message(f"spBv1.0/{GROUP}/NBIRTH/{NODE}", b"\xff not protobuf", 0.0)
    assert node.stale == [(REF, None, node.rejects[0])]
    after = send(host, "NDATA", 1, [by_alias(1, 74.1)])
    assert after.values == [] and after.rejects == [f"NDATA from {REF} before its birth"]
