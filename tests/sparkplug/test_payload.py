"""The Sparkplug B payload layer: the wire bytes of the schema's field numbers, round trips of every scalar
datatype (signed integers two's complement in the unsigned fields), every reason a payload is refused, and
hypothesis on arbitrary and on valid payloads."""

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bridge.sparkplug import sparkplug_b_pb2 as pb
from bridge.sparkplug.payload import (BDSEQ, REBIRTH_METRIC, DataType, Metric, Payload, PayloadError,
                                      decode_payload, encode_payload, rebirth_request, typed_value)

ROOT = Path(__file__).resolve().parents[2]
TS = 1_764_590_400_000


def _float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _round_trip(metric: Metric) -> Metric:
    (decoded,) = decode_payload(encode_payload(TS, 1, [metric])).metrics
    return decoded


def _nested(field: int, body: bytes) -> bytes:
    """A length-delimited protobuf field, by hand (bodies under 128 bytes)."""
    assert len(body) < 128
    return bytes([field << 3 | 2, len(body)]) + body


def test_wire_bytes_are_the_specifications_field_numbers() -> None:
    # Payload.timestamp = 1 (field 1, varint), metrics (field 2, 9 bytes), seq = 2 (field 3); the metric:
    # name "a" (field 1), alias 3 (field 2), datatype Int32 = 3 (field 4), int_value 7 (field 10: key 0x50).
    wire = bytes.fromhex("08 01" "12 09" "0a 01 61" "10 03" "20 03" "50 07" "18 02")
    assert encode_payload(1, 2, [Metric(name="a", alias=3, timestamp=None, datatype=DataType.Int32, value=7)]) == wire
    assert decode_payload(wire) == Payload(timestamp=1, seq=2, metrics=(
        Metric(name="a", alias=3, timestamp=None, datatype=3, value=7, field="int_value"),))


def test_rebirth_request_is_an_ncmd_without_seq() -> None:
    name = REBIRTH_METRIC.encode()
    # Payload.timestamp = 1; the metric: name, timestamp 1 (field 3), datatype Boolean = 11 (field 4),
    # boolean_value true (field 14: key 0x70). No seq: an NCMD must not carry one.
    metric = bytes([0x0A, len(name)]) + name + bytes.fromhex("18 01 20 0b 70 01")
    assert rebirth_request(1) == bytes.fromhex("08 01") + _nested(2, metric)
    assert decode_payload(rebirth_request(TS)) == Payload(timestamp=TS, seq=None, metrics=(
        Metric(name=REBIRTH_METRIC, alias=None, timestamp=TS, datatype=DataType.Boolean, value=True,
               field="boolean_value"),))


def test_datatype_numbers_are_the_schemas() -> None:
    assert {kind.name: kind.value for kind in DataType} == dict(pb.DataType.items())


def test_generated_module_is_the_code_of_the_schema(tmp_path: Path) -> None:
    descriptors = tmp_path / "sparkplug_b.desc"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ".", f"--descriptor_set_out={descriptors}",
                    "bridge/sparkplug/sparkplug_b.proto"], cwd=ROOT, check=True, timeout=60)
    compiled = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes()).file
    committed = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)

    def without_json_names(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:  # protoc adds them to a descriptor set, and leaves them out of gencode
            field.ClearField("json_name")
        for nested in message.nested_type:
            without_json_names(nested)

    for message in compiled[0].message_type:
        without_json_names(message)
    assert len(compiled) == 1
    assert compiled[0] == committed


# (datatype, value given to encode_payload, the oneof field, the value on the wire, typed_value of it)
SCALARS = [
    (DataType.Int8, -5, "int_value", 4294967291, -5),
    (DataType.Int8, -128, "int_value", 2**32 - 128, -128),
    (DataType.Int8, 127, "int_value", 127, 127),
    (DataType.Int16, -5, "int_value", 4294967291, -5),
    (DataType.Int16, -32768, "int_value", 2**32 - 32768, -32768),
    (DataType.Int32, -5, "int_value", 4294967291, -5),
    (DataType.Int32, -2**31, "int_value", 2**31, -2**31),
    (DataType.Int32, 2**31 - 1, "int_value", 2**31 - 1, 2**31 - 1),
    (DataType.Int64, -5, "long_value", 2**64 - 5, -5),
    (DataType.Int64, -2**63, "long_value", 2**63, -2**63),
    (DataType.Int64, 2**63 - 1, "long_value", 2**63 - 1, 2**63 - 1),
    (DataType.UInt8, 255, "int_value", 255, 255),
    (DataType.UInt16, 65535, "int_value", 65535, 65535),
    (DataType.UInt32, 2**32 - 1, "int_value", 2**32 - 1, 2**32 - 1),
    (DataType.UInt64, 2**64 - 1, "long_value", 2**64 - 1, 2**64 - 1),
    (DataType.Float, 74.01, "float_value", _float32(74.01), 74.01),
    (DataType.Float, -0.5, "float_value", -0.5, -0.5),
    (DataType.Double, 74.01, "double_value", 74.01, 74.01),
    (DataType.Boolean, True, "boolean_value", True, True),
    (DataType.Boolean, False, "boolean_value", False, False),
    (DataType.String, "Ø 74 mm", "string_value", "Ø 74 mm", "Ø 74 mm"),
    (DataType.Text, "", "string_value", "", ""),
    (DataType.UUID, "0b5c3f1e-6a27-4c1b-9a55-2f0f7d7c9a10", "string_value",
     "0b5c3f1e-6a27-4c1b-9a55-2f0f7d7c9a10", "0b5c3f1e-6a27-4c1b-9a55-2f0f7d7c9a10"),
    (DataType.DateTime, TS, "long_value", TS, TS),
    (DataType.Bytes, b"\x00\xff", "bytes_value", b"\x00\xff", b"\x00\xff"),
    (DataType.File, b"", "bytes_value", b"", b""),
]


@pytest.mark.parametrize(("datatype", "given", "field", "wire", "typed"), SCALARS,
                         ids=[f"{kind.name}={given!r}" for kind, given, *_ in SCALARS])
def test_scalar_round_trip(datatype: DataType, given: object, field: str, wire: object, typed: object) -> None:
    metric = Metric(name="Bore/Diameter", alias=9, timestamp=TS, datatype=datatype,
                    value=given)  # type: ignore[arg-type]
    decoded = _round_trip(metric)
    assert (decoded.field, decoded.value, decoded.datatype) == (field, wire, datatype)
    assert type(decoded.value) is type(wire)
    typed_back = typed_value(decoded.value, datatype)
    assert typed_back == typed and type(typed_back) is type(typed)
    # The wire form encodes to the same bytes as the typed one.
    assert encode_payload(TS, 1, [decoded]) == encode_payload(TS, 1, [metric])


@pytest.mark.parametrize(("datatype", "wire"), [
    (DataType.Int8, 251),              # in its own width (Tahu Python)
    (DataType.Int8, 2**32 - 5),        # in 32 bits (Tahu JavaScript and Java)
    (DataType.Int8, 2**64 - 5),        # sign-extended to 64 bits (an encoder that used long_value or int32)
    (DataType.Int16, 65531),
    (DataType.Int16, 2**32 - 5),
    (DataType.Int16, 2**64 - 5),
    (DataType.Int32, 2**32 - 5),
    (DataType.Int32, 2**64 - 5),
    (DataType.Int64, 2**64 - 5),
])
def test_negative_five_in_every_width_an_encoder_uses(datatype: DataType, wire: int) -> None:
    assert typed_value(wire, datatype) == -5


def test_8_and_16_bit_extremes() -> None:
    assert [typed_value(raw, DataType.Int8) for raw in (0, 127, 128, 255, 2**32 - 128)] == [0, 127, -128, -1, -128]
    assert [typed_value(raw, DataType.Int16) for raw in (32767, 32768, 65535)] == [32767, -32768, -1]


def test_uint32_in_long_value_as_tahu_javascript_sends_it() -> None:
    decoded = _round_trip(Metric(name="Count", alias=1, timestamp=TS, datatype=DataType.UInt32, value=4_000_000_000,
                                 field="long_value"))
    assert (decoded.field, typed_value(decoded.value, DataType.UInt32)) == ("long_value", 4_000_000_000)


def test_a_float_sent_as_a_double_is_kept_exactly() -> None:
    assert typed_value(74.01, DataType.Float) == 74.01
    assert typed_value(0.1 + 0.2, DataType.Float) == 0.1 + 0.2   # no float32: returned as it is
    assert typed_value(1e300, DataType.Float) == 1e300


@pytest.mark.parametrize(("value", "datatype", "reason"), [
    (256, DataType.Int8, "256 does not fit Int8"),
    (2**32 - 129, DataType.Int8, "does not fit Int8"),
    (70000, DataType.Int16, "70000 does not fit Int16"),
    (2**32, DataType.Int32, "does not fit Int32"),
    (2**64, DataType.Int64, "does not fit Int64"),
    (-2**63 - 1, DataType.Int64, "does not fit Int64"),
    (256, DataType.UInt8, "256 does not fit UInt8"),
    (65536, DataType.UInt16, "does not fit UInt16"),
    (2**32, DataType.UInt32, "does not fit UInt32"),
    (2**64, DataType.UInt64, "does not fit UInt64"),
    (-1, DataType.UInt32, "-1 does not fit UInt32"),
    (-1, DataType.DateTime, "does not fit DateTime"),
    (True, DataType.Int32, "datatype Int32 does not take bool True"),
    (7.5, DataType.Int32, "datatype Int32 does not take float 7.5"),
    ("7", DataType.UInt8, "datatype UInt8 does not take str '7'"),
    (7, DataType.Float, "datatype Float does not take int 7"),
    (1, DataType.Boolean, "datatype Boolean does not take int 1"),
    (b"x", DataType.String, "datatype String does not take 1 bytes"),
    ("x", DataType.Bytes, "datatype Bytes does not take str 'x'"),
    (b"", DataType.DataSet, "datatype DataSet is not a scalar"),
    (b"", DataType.Int32Array, "datatype Int32Array is not a scalar"),
    (1, DataType.Unknown, "datatype Unknown is not a scalar"),
    (1, 99, "unknown datatype 99"),
])
def test_a_value_that_does_not_fit_its_datatype(value: object, datatype: int, reason: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(reason)):
        typed_value(value, datatype)  # type: ignore[arg-type]


def test_null_stays_null() -> None:
    assert typed_value(None, DataType.Double) is None
    null = _round_trip(Metric(name="Bore", alias=2, timestamp=TS, datatype=DataType.Double, value=None, is_null=True))
    assert (null.is_null, null.value, null.field) == (True, None, None)
    # A value sent beside is_null is not taken.
    flagged = _round_trip(Metric(name="Bore", alias=2, timestamp=TS, datatype=DataType.Double, value=74.0,
                                 is_null=True))
    assert (flagged.is_null, flagged.value, flagged.field) == (True, None, "double_value")


def test_historical_and_transient_flags_and_the_metrics_own_timestamp() -> None:
    sent = Metric(name="Bore", alias=2, timestamp=TS - 60_000, datatype=DataType.Double, value=74.0,
                  is_historical=True, is_transient=True)
    decoded = _round_trip(sent)
    assert (decoded.is_historical, decoded.is_transient, decoded.timestamp) == (True, True, TS - 60_000)
    plain = _round_trip(Metric(name="Bore", alias=None, timestamp=None, datatype=None, value=74.0))
    assert (plain.is_historical, plain.is_transient, plain.is_null, plain.timestamp, plain.datatype) == (
        False, False, False, None, None)


def test_data_by_alias_only() -> None:
    # DATA after a birth: the alias, the wire value and no datatype; the datatype comes from the birth.
    decoded = _round_trip(Metric(name=None, alias=2**64 - 1, timestamp=TS, datatype=None, value=4294967291,
                                 field="int_value"))
    assert (decoded.name, decoded.alias, decoded.datatype, decoded.value) == (None, 2**64 - 1, None, 4294967291)
    assert typed_value(decoded.value, DataType.Int32) == -5
    negative = _round_trip(Metric(name=None, alias=1, timestamp=TS, datatype=None, value=-5, field="int_value"))
    assert negative.value == 4294967291


def test_bdseq_in_birth_and_death() -> None:
    birth = decode_payload(encode_payload(TS, 0, [
        Metric(name=BDSEQ, alias=None, timestamp=TS, datatype=DataType.UInt64, value=255),
        Metric(name=REBIRTH_METRIC, alias=None, timestamp=TS, datatype=DataType.Boolean, value=False),
        Metric(name="Bore", alias=1, timestamp=TS, datatype=DataType.Float, value=74.01)]))
    assert birth.seq == 0
    assert [(metric.name, metric.value) for metric in birth.metrics[:2]] == [(BDSEQ, 255), (REBIRTH_METRIC, False)]
    death = decode_payload(encode_payload(TS, None, [
        Metric(name=BDSEQ, alias=None, timestamp=TS, datatype=DataType.Int64, value=3)]))
    assert death.seq is None and death.metrics[0].name == BDSEQ
    assert typed_value(death.metrics[0].value, DataType.Int64) == 3


def test_structures_decode_to_no_value_with_their_field() -> None:
    message = pb.Payload(timestamp=TS, seq=4)
    table = message.metrics.add(name="Table", alias=1, datatype=DataType.DataSet)
    table.dataset_value.num_of_columns = 1
    table.dataset_value.columns.append("x")
    table.dataset_value.types.append(DataType.Double)
    table.dataset_value.rows.add().elements.add(double_value=1.5)
    udt = message.metrics.add(name="Gauge", alias=2, datatype=DataType.Template)
    udt.template_value.is_definition = False
    udt.template_value.template_ref = "GaugeType"
    udt.template_value.metrics.add(name="Bore", datatype=DataType.Double, double_value=74.0)
    message.metrics.add(name="Ext", alias=3).extension_value.SetInParent()
    decoded = decode_payload(message.SerializeToString())
    assert [(metric.value, metric.field) for metric in decoded.metrics] == [
        (None, "dataset_value"), (None, "template_value"), (None, "extension_value")]
    assert decode_payload(encode_payload(TS, 4, decoded.metrics)).metrics == decoded.metrics


# Each reason a payload is refused, with the bytes that show it.
NO_NAME = _nested(2, bytes.fromhex("18 01 20 03 50 07"))        # timestamp, datatype and value only
EMPTY_NAME = _nested(2, bytes.fromhex("0a 00 50 07"))
BAD_UTF8_NAME = _nested(2, bytes.fromhex("0a 01 ff 10 01"))
BAD_UTF8_STRING = _nested(2, bytes.fromhex("10 01 7a 01 ff"))    # string_value: field 15


@pytest.mark.parametrize(("data", "limits", "reason"), [
    (b"", {}, "empty payload"),
    (b"\x00" * 11, {"max_bytes": 10}, "payload of 11 bytes exceeds the limit of 10 bytes"),
    (encode_payload(TS, 0, [Metric("m", i, TS, DataType.Int32, i) for i in range(3)]), {"max_metrics": 2},
     "payload of 3 metrics exceeds the limit of 2 metrics"),
    (b'{"value": 74.01}', {}, r"not a Sparkplug B payload \(protobuf\): "),
    (b"\xff\xff\xff", {}, r"not a Sparkplug B payload \(protobuf\)"),
    (encode_payload(TS, 0, []) + b"\x12\x05\x0a", {}, r"not a Sparkplug B payload \(protobuf\)"),  # cut short
    (encode_payload(TS, 256, []), {}, "seq 256 outside 0..255"),
    (encode_payload(TS, 2**64 - 1, []), {}, f"seq {2**64 - 1} outside 0..255"),
    (NO_NAME, {}, r"metrics\[0\] has neither a name nor an alias"),
    (EMPTY_NAME, {}, r"metrics\[0\] has neither a name nor an alias"),
    (encode_payload(TS, 1, [Metric("a", 1, TS, None, 1.0)]) + NO_NAME, {}, r"metrics\[1\] has neither"),
    (BAD_UTF8_NAME, {}, r"not a Sparkplug B payload \(protobuf\).*name"),
    (BAD_UTF8_STRING, {}, r"not a Sparkplug B payload \(protobuf\).*string_value"),
], ids=["empty", "too-large", "too-many-metrics", "json", "garbage", "truncated", "seq-256", "seq-max",
        "no-name-no-alias", "empty-name-no-alias", "second-metric-nameless", "name-not-utf8", "string-not-utf8"])
def test_every_reason_a_payload_is_refused(data: bytes, limits: dict[str, int], reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_payload(data, **limits)


def test_limits_at_their_edge_are_accepted() -> None:
    data = encode_payload(TS, 255, [Metric("m", i, TS, DataType.Int32, i) for i in range(3)])
    assert len(decode_payload(data, max_bytes=len(data), max_metrics=3).metrics) == 3


def test_strings_that_are_not_utf8_under_the_pure_python_protobuf() -> None:
    # That implementation refuses them while parsing (UnicodeDecodeError) where upb hands over bytes.
    program = ("import sys\nfrom bridge.sparkplug.payload import PayloadError, decode_payload\n"
               "from google.protobuf.internal import api_implementation\n"
               "assert api_implementation.Type() == 'python'\n"
               f"for data in ({BAD_UTF8_NAME!r}, {BAD_UTF8_STRING!r}):\n"
               "    try:\n        decode_payload(data)\n    except PayloadError as error:\n        print(error)\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("not a Sparkplug B payload (protobuf): ") for line in lines)


@pytest.mark.parametrize(("metric", "reason"), [
    (Metric("a", 1, TS, DataType.UInt32, 2**32), "metrics\\[0\\]: Value out of range"),
    (Metric("a", 1, TS, DataType.UInt8, -1), "metrics\\[0\\]: Value out of range"),
    (Metric("a", 1, TS, DataType.Int32, -2**31 - 1), "-2147483649 does not fit int_value"),
    (Metric("a", 1, TS, DataType.Int8, -1, field="string_value"), "-1 does not fit string_value"),
    (Metric("a", 1, TS, DataType.Double, "x"), "metrics\\[0\\]: "),
    (Metric("a", -1, TS, None, 1.0), "metrics\\[0\\]: "),
])
def test_encode_refuses_a_value_its_field_cannot_hold(metric: Metric, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        encode_payload(TS, 0, [metric])


# A hostile publisher: random bytes, and valid payloads with bytes flipped, cut or spliced.
VALID = encode_payload(TS, 7, [
    Metric("Bore", 1, TS, DataType.Float, 74.01, is_historical=True),
    Metric(None, 2, TS, None, 4294967291, field="int_value"),
    Metric("Table", 3, TS, DataType.DataSet, None, field="dataset_value"),
    Metric("Text", 4, None, DataType.String, "Ø"), Metric("Null", 5, TS, DataType.Int64, None, is_null=True)])
MUTATED = st.tuples(st.integers(0, len(VALID)), st.integers(0, 255), st.binary(max_size=8)).map(
    lambda edit: VALID[:edit[0]] + bytes([edit[1]]) + edit[2] + VALID[edit[0] + 1:])


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | MUTATED | st.sampled_from([VALID[:k] for k in range(len(VALID))]))
def test_decode_returns_a_payload_or_says_why_not(data: bytes) -> None:
    try:
        payload = decode_payload(data)
    except PayloadError as error:
        assert str(error)
        return
    assert isinstance(payload, Payload)
    assert payload.seq is None or 0 <= payload.seq <= 255
    for metric in payload.metrics:
        assert metric.name or metric.alias is not None
        assert metric.name is None or isinstance(metric.name, str)
        if metric.is_null:
            assert metric.value is None
        if metric.datatype is not None and metric.value is not None:
            try:
                typed_value(metric.value, metric.datatype)
            except PayloadError:
                pass


UINT64 = st.integers(0, 2**64 - 1)
# (datatype, the value a sender means): every scalar datatype over its whole range.
MEANT = st.one_of(
    *[st.tuples(st.just(kind), st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
      for kind, bits in ((DataType.Int8, 8), (DataType.Int16, 16), (DataType.Int32, 32), (DataType.Int64, 64))],
    *[st.tuples(st.just(kind), st.integers(0, (1 << bits) - 1))
      for kind, bits in ((DataType.UInt8, 8), (DataType.UInt16, 16), (DataType.UInt32, 32), (DataType.UInt64, 64),
                         (DataType.DateTime, 64))],
    st.tuples(st.just(DataType.Float), st.floats(width=32, allow_nan=False)),
    st.tuples(st.just(DataType.Double), st.floats(allow_nan=False)),
    st.tuples(st.just(DataType.Boolean), st.booleans()),
    st.tuples(st.sampled_from([DataType.String, DataType.Text, DataType.UUID]), st.text(max_size=20)),
    st.tuples(st.sampled_from([DataType.Bytes, DataType.File]), st.binary(max_size=20)))
SENT = st.builds(
    lambda meant, name, alias, timestamp, flags, birth: (meant, Metric(
        name=name, alias=alias, timestamp=timestamp, datatype=meant[0] if birth else None, value=meant[1],
        field=None if birth else _field_of(meant[0]), is_historical=flags[0], is_transient=flags[1])),
    MEANT, st.none() | st.text(min_size=1, max_size=20), UINT64, st.none() | UINT64, st.tuples(st.booleans(),
                                                                                                 st.booleans()),
    st.booleans())


def _field_of(kind: DataType) -> str:
    return {DataType.Int64: "long_value", DataType.UInt64: "long_value", DataType.DateTime: "long_value",
            DataType.Float: "float_value", DataType.Double: "double_value", DataType.Boolean: "boolean_value",
            DataType.String: "string_value", DataType.Text: "string_value", DataType.UUID: "string_value",
            DataType.Bytes: "bytes_value", DataType.File: "bytes_value"}.get(kind, "int_value")


@settings(max_examples=300, deadline=None)
@given(st.none() | UINT64, st.none() | st.integers(0, 255), st.lists(SENT, max_size=20))
def test_valid_payloads_round_trip(timestamp: int | None, seq: int | None,
                                   sent: list[tuple[tuple[DataType, object], Metric]]) -> None:
    assume(timestamp is not None or seq is not None or sent)  # else no bytes at all: an empty payload
    payload = decode_payload(encode_payload(timestamp, seq, [metric for _, metric in sent]))
    assert (payload.timestamp, payload.seq, len(payload.metrics)) == (timestamp, seq, len(sent))
    for ((kind, meant), metric), decoded in zip(sent, payload.metrics):
        assert (decoded.name, decoded.alias, decoded.timestamp, decoded.datatype) == (
            metric.name, metric.alias, metric.timestamp, metric.datatype)
        assert (decoded.is_historical, decoded.is_transient, decoded.is_null) == (
            metric.is_historical, metric.is_transient, False)
        assert decoded.field == _field_of(kind)
        typed = typed_value(decoded.value, kind)
        if kind is DataType.Float:  # the same float32, read back as its shortest decimal
            assert struct.pack("<f", typed) == struct.pack("<f", meant)  # type: ignore[arg-type]
        else:
            assert typed == meant and type(typed) is type(meant)
