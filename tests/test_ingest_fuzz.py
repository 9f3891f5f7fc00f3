"""Hypothesis drives the ingest parser and the assembler: any payload is a reading or a clear
IngestError, never a crash, and valid readings come out exactly as they went in."""

import json
import math
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.assemble import Assembler
from bridge.ingest import IngestError, parse_reading
from bridge.spc import ChartSpec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(
        st.sampled_from(["value", "values", "count", "n", "ts", "seq", "id", "x"]) | st.text(max_size=5),
        children, max_size=5),
    max_leaves=20)
SPECS = [ChartSpec(chart="imr", baseline=3), ChartSpec(chart="xbar_s", subgroup_size=4, baseline=3),
         ChartSpec(chart="p", subgroup_size=20, baseline=3), ChartSpec(chart="c", baseline=3)]


def _payload(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.binary(max_size=200), JSON.map(_payload)))
def test_any_payload_is_a_reading_or_a_clear_error(payload: bytes) -> None:
    """Parse, then feed every chart kind: only IngestError may come out, with a message."""
    try:
        reading = parse_reading(payload, NOW, max_payload=150)
    except IngestError as error:
        assert str(error)
        return
    for spec in SPECS:
        assembler = Assembler(spec)
        try:
            assembler.accept(reading)
        except IngestError as error:
            assert str(error)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=5),
       st.one_of(st.none(), st.integers(0, 10**9).map(str)),
       st.datetimes(max_value=datetime(2026, 11, 26, 12, 0), timezones=st.just(timezone.utc)))
def test_valid_readings_round_trip(values: list[float], seq: str | None, ts: datetime) -> None:
    """Values, seq and the timestamp string come out exactly as sent."""
    text = ts.isoformat()
    body: dict[str, object] = {"values": values, "ts": text}
    if seq is not None:
        body["seq"] = seq
    reading = parse_reading(_payload(body), NOW)
    assert reading.values == tuple(values) and reading.seq == seq and reading.ts == text
    assert reading.time == ts and not reading.single


def test_non_finite_numbers_are_refused() -> None:
    """NaN and Infinity, bare or inside an object, are errors."""
    for payload in (b"NaN", b"Infinity", b"-Infinity", b'{"value": NaN}', b'{"values": [1, Infinity]}'):
        try:
            parse_reading(payload, NOW)
        except IngestError as error:
            assert "not a number" in str(error) or "finite" in str(error)
        else:
            raise AssertionError(f"{payload!r} was accepted")
    assert math.isfinite(parse_reading(b"1e308", NOW).values[0])  # type: ignore[index]
