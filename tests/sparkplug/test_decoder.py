"""The Sparkplug decoder between the host application and the pipeline: values become readings of the
characteristics bound to their metrics (counts with their n_metric), births and deaths become status events
only when a status changes, what a chart cannot take is a reject of that characteristic, and a failed batch
leaves no trace."""

import json
from datetime import datetime, timezone

from bridge.assemble import Assembler
from bridge.config import CharacteristicConfig
from bridge.service.messages import Inbound
from bridge.service.registry import Characteristic
from bridge.service.sparkplug_decoder import Binding, SparkplugDecoder
from bridge.service.status import StatusBoard
from bridge.sparkplug.host import MetricKey, NodeRef, SparkplugHost
from bridge.sparkplug.payload import BDSEQ, DataType, Metric, encode_payload

T0 = 1_764_590_400_000
NODE = "spBv1.0/Plant1/{kind}/Line3"


def _characteristic(cid: int, chart: str, **options: object) -> Characteristic:
    config = CharacteristicConfig.model_validate({"id": cid, "name": f"c{cid}", "chart": chart, "baseline": 2,
                                                  "sparkplug": {"group_id": "Plant1", "edge_node_id": "Line3",
                                                                "metric": f"m{cid}"}, **options})
    spec = config.chart_spec()
    return Characteristic(cid, spec, Assembler(spec))


def _key(metric: str) -> MetricKey:
    return MetricKey("Plant1", "Line3", None, metric)


def _decoder() -> SparkplugDecoder:
    measured = _characteristic(1, "imr")
    rejects = _characteristic(2, "p", subgroup_size=50)
    return SparkplugDecoder(SparkplugHost(reorder_timeout_s=1.0), [
        Binding(measured, _key("Bore"), None), Binding(rejects, _key("Rejects"), _key("Inspected"))], StatusBoard())


def _message(kind: str, seq: int, metrics: list[Metric]) -> Inbound:
    return Inbound(NODE.format(kind=kind), encode_payload(T0, seq, metrics), datetime.now(timezone.utc), None)


BIRTH = [Metric(BDSEQ, None, T0, DataType.UInt64, 0),
         Metric("Bore", 1, T0, DataType.Double, 74.0), Metric("Rejects", 2, T0, DataType.Int32, 0),
         Metric("Inspected", 3, T0, DataType.Int32, 50), Metric("Label", 4, T0, DataType.String, "")]


def test_values_become_readings_a_count_takes_its_n_metric_and_births_make_status_events() -> None:
    decoder = _decoder()
    birth = decoder.decode(_message("NBIRTH", 0, BIRTH))
    assert birth.readings == [] and birth.refusals == []
    assert [(e.topic, json.loads(e.payload)["stale"], e.retain) for e in birth.events] == [
        ("spc/1/status", False, True), ("spc/2/status", False, True)]
    data = decoder.decode(_message("NDATA", 1, [Metric(None, 1, T0 + 1, None, 74.5),
                                                Metric(None, 3, T0 + 1, None, 40),
                                                Metric(None, 2, T0 + 1, None, 4294967293)]))  # Int32 -3: refused
    assert [(d.characteristic.id, d.reading.values, d.key) for d in data.readings] == [
        (1, (74.5,), "ts:2025-12-01T12:00:00.001000+00:00")]
    assert [r.reason for r in data.refusals] == ["characteristic 2: metric Rejects must be a whole number in "
                                                 "0..2147483647, got -3"]
    count = decoder.decode(_message("NDATA", 2, [Metric(None, 2, T0 + 2, None, 3)]))
    reading = count.readings[0].reading
    assert (reading.count, reading.n, reading.ts) == (3, 40, "2025-12-01T12:00:00.002Z")  # the last n seen
    assert count.events == [] and decoder.decode(_message("NBIRTH", 0, BIRTH)).events == []  # no change, no event


def test_a_metric_that_is_not_a_number_is_a_reject_of_its_characteristic() -> None:
    decoder = _decoder()
    decoder.decode(_message("NBIRTH", 0, [*BIRTH[:1], Metric("Bore", 1, T0, DataType.Boolean, False), *BIRTH[2:]]))
    out = decoder.decode(_message("NDATA", 1, [Metric(None, 1, T0 + 1, None, True)]))
    assert out.readings == [] and [r.reason for r in out.refusals] == [
        "characteristic 1: metric Bore is Boolean True, not a number"]


def test_deaths_and_a_lost_connection_make_the_characteristics_stale_once() -> None:
    decoder = _decoder()
    decoder.decode(_message("NBIRTH", 0, BIRTH))
    lost = decoder.connection_lost("the Sparkplug connection was lost (test)")
    stale = [json.loads(e.payload) for e in lost]
    assert [(s["characteristic_id"], s["stale"]) for s in stale] == [(1, True), (2, True)]
    assert "connection was lost" in stale[0]["stale_reason"] and "Plant1/Line3" in stale[0]["stale_reason"]
    assert decoder.connection_lost("again") == []  # nothing changed


def test_a_rolled_back_batch_leaves_the_host_statuses_and_rebirths_as_they_were() -> None:
    decoder = _decoder()
    decoder.begin()
    decoder.decode(_message("NDATA", 5, [Metric(None, 1, T0, None, 1.0)]))  # before any birth: a rebirth request
    decoder.decode(_message("NBIRTH", 0, BIRTH))
    decoder.rollback()
    assert decoder.take_rebirths() == [] and decoder.status == {}
    decoder.begin()
    before_birth = decoder.decode(_message("NDATA", 5, [Metric(None, 1, T0, None, 1.0)]))
    decoder.commit()
    assert "before its birth" in before_birth.refusals[0].reason
    assert decoder.take_rebirths() == [NodeRef("Plant1", "Line3")] and decoder.take_rebirths() == []


def test_a_historical_value_is_a_reading_at_its_own_time_evaluated_as_it_arrives() -> None:
    """is_historical data (store-and-forward) is taken like live data, its sample timed by its acquisition time."""
    decoder = _decoder()
    decoder.decode(_message("NBIRTH", 0, BIRTH))
    live = decoder.decode(_message("NDATA", 1, [Metric(None, 1, T0 + 60_000, None, 74.2)]))
    late = decoder.decode(_message("NDATA", 2, [Metric(None, 1, T0 + 1_000, None, 74.1, is_historical=True)]))
    assert [d.reading.ts for d in live.readings + late.readings] == ["2025-12-01T12:01:00.000Z",
                                                                    "2025-12-01T12:00:01.000Z"]
