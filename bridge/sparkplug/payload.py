"""Sparkplug B payloads: decode a protobuf message into typed metrics, or say why it is not one.

The schema is ``sparkplug_b.proto`` beside this file, written from the payload definition of the Sparkplug 3.0
specification. ``sparkplug_b_pb2.py`` and ``.pyi`` are generated from it by grpcio-tools 1.74.0 (protoc 31.1,
Python gencode 6.31.1), which runs on protobuf 6.31.1 and every later 6.x and 7.x (the gencode checks only that
the runtime is not older). To regenerate, in a scratch virtualenv (grpcio-tools 1.74.0 pins protobuf < 7), from
the repository root::

    pip install grpcio-tools==1.74.0
    python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. bridge/sparkplug/sparkplug_b.proto

and raise the ``protobuf`` lower bound in pyproject.toml to the "Protobuf Python Version" in the new header.
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import DecodeError

from bridge.sparkplug import sparkplug_b_pb2 as pb

Value = bool | int | float | str | bytes | None

BDSEQ = "bdSeq"                         # the birth/death sequence metric of NBIRTH and NDEATH
REBIRTH_METRIC = "Node Control/Rebirth"
MAX_BYTES = 1_048_576
MAX_METRICS = 10_000
MAX_SEQ = 255


class PayloadError(ValueError):
    """A payload that is not a Sparkplug B payload; the message is the reason recorded with the reject."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a payload as sent; ``typed_value`` gives its value with the sign of its datatype."""

    name: str | None
    alias: int | None
    timestamp: int | None      # ms since the epoch (UTC); None when the metric has none
    datatype: int | None       # the Sparkplug DataType number; None when not sent (DATA may omit it)
    value: Value               # as on the wire: int_value/long_value unsigned (see ``typed_value``);
                               # None when is_null or when the value is not a scalar (DataSet, Template, ...)
    field: str | None = None   # the oneof field that carried the value ("int_value", "long_value", ...)
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded payload: its timestamp, its seq (0..255) and its metrics."""

    timestamp: int | None
    seq: int | None
    metrics: tuple[Metric, ...]


class DataType(IntEnum):
    """The Sparkplug B datatype numbers (specification 3.0, "Data Types")."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UNSIGNED_BITS = {DataType.UInt8: 8, DataType.UInt16: 16, DataType.UInt32: 32, DataType.UInt64: 64,
                  DataType.DateTime: 64}
# The scalar value fields of a metric, with the Python type each decodes to; any other oneof field
# (dataset_value, template_value, extension_value) is a structure that decodes to None.
_SCALAR_FIELDS: dict[str, type] = {"int_value": int, "long_value": int, "float_value": float, "double_value": float,
                                   "boolean_value": bool, "string_value": str, "bytes_value": bytes}
_FIELD_BITS = {"int_value": 32, "long_value": 64}
# Where each datatype travels (specification: "Google Protocol Buffer Type"); arrays are bytes_value.
_FIELD_OF: dict[int, str] = {DataType.Int8: "int_value", DataType.Int16: "int_value", DataType.Int32: "int_value",
                             DataType.UInt8: "int_value", DataType.UInt16: "int_value", DataType.UInt32: "int_value",
                             DataType.Int64: "long_value", DataType.UInt64: "long_value",
                             DataType.DateTime: "long_value", DataType.Float: "float_value",
                             DataType.Double: "double_value", DataType.Boolean: "boolean_value",
                             DataType.String: "string_value", DataType.Text: "string_value",
                             DataType.UUID: "string_value", DataType.Bytes: "bytes_value", DataType.File: "bytes_value"}
# The Python type of each of the other scalar datatypes.
_PYTHON_TYPE = {DataType.Float: float, DataType.Double: float, DataType.Boolean: bool, DataType.String: str,
                DataType.Text: str, DataType.UUID: str, DataType.Bytes: bytes, DataType.File: bytes}
_FIELD_OF_TYPE = {bool: "boolean_value", int: "long_value", float: "double_value", str: "string_value",
                  bytes: "bytes_value"}


def decode_payload(data: bytes, max_bytes: int = MAX_BYTES, max_metrics: int = MAX_METRICS) -> Payload:
    """The Sparkplug B payload in `data`; PayloadError, with the reason, for anything that is not one (and for
    nothing else): empty, over `max_bytes` or `max_metrics`, not protobuf, a seq outside 0..255, or a metric
    with neither a name nor an alias."""
    if not data:
        raise PayloadError("empty payload: not a Sparkplug B payload")
    if len(data) > max_bytes:
        raise PayloadError(f"payload of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    message = pb.Payload()
    try:
        message.ParseFromString(data)
    # The pure-Python protobuf raises UnicodeDecodeError for a string that is not UTF-8 (upb hands it over as
    # bytes, checked below).
    except (DecodeError, UnicodeDecodeError) as error:
        raise PayloadError(f"not a Sparkplug B payload (protobuf): {error}") from None
    if len(message.metrics) > max_metrics:
        raise PayloadError(f"payload of {len(message.metrics)} metrics exceeds the limit of {max_metrics} metrics")
    seq = message.seq if message.HasField("seq") else None
    if seq is not None and seq > MAX_SEQ:
        raise PayloadError(f"seq {seq} outside 0..{MAX_SEQ}")
    return Payload(timestamp=message.timestamp if message.HasField("timestamp") else None, seq=seq,
                   metrics=tuple(_metric(metric, index) for index, metric in enumerate(message.metrics)))


def _metric(metric: pb.Payload.Metric, index: int) -> Metric:
    name = metric.name if metric.HasField("name") else None
    alias = metric.alias if metric.HasField("alias") else None
    if not name and alias is None:
        raise PayloadError(f"metrics[{index}] has neither a name nor an alias")
    if name is not None and not isinstance(name, str):
        raise PayloadError(f"not a Sparkplug B payload (protobuf): metrics[{index}].name is not UTF-8")
    field = metric.WhichOneof("value")
    value: Value = None
    if field in _SCALAR_FIELDS and not metric.is_null:
        value = getattr(metric, field)
        if not isinstance(value, _SCALAR_FIELDS[field]):
            raise PayloadError(f"not a Sparkplug B payload (protobuf): metrics[{index}].{field} is not UTF-8")
    return Metric(name=name, alias=alias, timestamp=metric.timestamp if metric.HasField("timestamp") else None,
                  datatype=metric.datatype if metric.HasField("datatype") else None, value=value, field=field,
                  is_null=metric.is_null, is_historical=metric.is_historical, is_transient=metric.is_transient)


def typed_value(value: Value, datatype: int) -> Value:
    """`value` as sent (``Metric.value``) read as Sparkplug `datatype`: signed integers with their sign, Float as
    the shortest decimal of its float32, the rest unchanged (DateTime: ms since the epoch); None stays None.
    PayloadError if the value does not fit the datatype or the datatype is not a scalar."""
    if value is None:
        return None
    try:
        kind = DataType(datatype)
    except ValueError:
        raise PayloadError(f"unknown datatype {datatype}") from None
    if kind in _SIGNED_BITS:
        return _signed(_integer(value, kind), _SIGNED_BITS[kind], kind)
    if kind in _UNSIGNED_BITS:
        raw = _integer(value, kind)
        if not 0 <= raw < 1 << _UNSIGNED_BITS[kind]:
            raise PayloadError(f"{raw} does not fit {kind.name}")
        return raw
    expected = _PYTHON_TYPE.get(kind)
    if expected is None:
        raise PayloadError(f"datatype {kind.name} is not a scalar this bridge reads")
    if type(value) is not expected:
        raise PayloadError(f"datatype {kind.name} does not take {_describe(value)}")
    return _float32(value) if kind is DataType.Float else value


def _integer(value: Value, kind: DataType) -> int:
    if type(value) is not int:  # bool is an int to Python, not to Sparkplug
        raise PayloadError(f"datatype {kind.name} does not take {_describe(value)}")
    return value


def _signed(raw: int, bits: int, kind: DataType) -> int:
    """`raw` as a `bits`-wide signed integer. A negative one arrives two's complement: the specification sends
    Int8 and Int16 in a uint32 without saying in which width, and encoders differ (Tahu JavaScript and Java:
    32 bits, so Int8 -5 is 4294967291; Tahu Python: the type's own width, 251), so each of the type's width,
    32 and 64 bits is read; the ranges cannot overlap. An already negative value in range is returned as is."""
    half = 1 << (bits - 1)
    if -half <= raw < half:
        return raw
    for width in (bits, 32, 64):
        if width >= bits and (1 << width) - half <= raw < 1 << width:
            return raw - (1 << width)
    raise PayloadError(f"{raw} does not fit {kind.name}")


def _float32(value: float) -> float:
    """A float32 widened to a double (74.01 arrives as 74.01000213623047) as the shortest decimal that reads back
    as the same float32; a value that is no float32 (a Float sent as a double, NaN) is returned as it is."""
    try:
        packed = struct.pack("<f", value)
    except OverflowError:
        return value
    if struct.unpack("<f", packed)[0] != value:
        return value
    for digits in range(6, 10):  # 6 digits always survive a float32, 9 always identify one
        short = float(f"{value:.{digits}g}")
        if struct.pack("<f", short) == packed:
            return short
    return value


def _describe(value: Value) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, bytes) else f"{len(value)} bytes"


def encode_payload(timestamp: int | None, seq: int | None, metrics: Sequence[Metric]) -> bytes:
    """A Sparkplug B payload of `metrics`, for the bridge's commands, the bench and tests. A metric's field is its
    ``field``, else the one of its datatype, else the one of its Python type; a negative integer of a signed
    datatype, or of none (DATA by alias), is sent two's complement in the width of its field. No Sparkplug rule
    is checked (tests send broken payloads), only that each value fits its field: PayloadError otherwise."""
    message = pb.Payload()
    try:
        if timestamp is not None:
            message.timestamp = timestamp
        if seq is not None:
            message.seq = seq
    except (TypeError, ValueError) as error:
        raise PayloadError(f"payload timestamp or seq: {error}") from None
    for index, metric in enumerate(metrics):
        try:
            _encode_metric(message.metrics.add(), metric)
        except (TypeError, ValueError) as error:
            raise PayloadError(f"metrics[{index}]: {error}") from None
    return message.SerializeToString()


def _encode_metric(out: pb.Payload.Metric, metric: Metric) -> None:
    if metric.name is not None:
        out.name = metric.name
    if metric.alias is not None:
        out.alias = metric.alias
    if metric.timestamp is not None:
        out.timestamp = metric.timestamp
    if metric.datatype is not None:
        out.datatype = metric.datatype
    for flag in ("is_historical", "is_transient", "is_null"):
        if getattr(metric, flag):
            setattr(out, flag, True)
    value = metric.value
    field = metric.field or _FIELD_OF.get(metric.datatype or DataType.Unknown) or _FIELD_OF_TYPE.get(type(value))
    if field is None:
        return
    if field not in _SCALAR_FIELDS:
        getattr(out, field).SetInParent()  # a structure, sent empty: the field alone is kept
        return
    if value is None:
        return
    if (metric.datatype is None or metric.datatype in _SIGNED_BITS) and type(value) is int and value < 0:
        bits = _FIELD_BITS.get(field)
        if bits is None or value < -(1 << (bits - 1)):
            raise PayloadError(f"{value} does not fit {field}")
        value += 1 << bits
    setattr(out, field, value)


def rebirth_request(timestamp_ms: int) -> bytes:
    """The NCMD payload that asks an edge node to publish its births again: ``Node Control/Rebirth`` = true
    (specification 3.0, "NCMD"; a command carries no seq)."""
    return encode_payload(timestamp_ms, None, [Metric(name=REBIRTH_METRIC, alias=None, timestamp=timestamp_ms,
                                                      datatype=DataType.Boolean, value=True)])
