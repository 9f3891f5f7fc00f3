"""Hypothesis drives the ingest parser and the assembler: any payload is a reading or a clear
IngestError, never a crash (deep nesting, huge numbers and extreme timestamps included), every
accepted reading is within the bounds the engine and the database need, and valid readings come
out exactly as they went in."""

import json
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.assemble import Assembler
from bridge.ingest import (MAX_COUNT, MAX_DEPTH, MAX_SEQ_CHARS, MAX_TS_CHARS, MIN_YEAR, IngestError,
                           Reading, parse_reading)
from bridge.spc import MAX_MAGNITUDE, MAX_SUBGROUP, ChartSpec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(
        st.sampled_from(["value", "values", "count", "n", "ts", "seq", "id", "x"]) | st.text(max_size=5),
        children, max_size=5),
    max_leaves=20)
SPECS = [ChartSpec(chart="imr", baseline=3), ChartSpec(chart="xbar_s", subgroup_size=4, baseline=3),
         ChartSpec(chart="p", subgroup_size=20, baseline=3), ChartSpec(chart="c", baseline=3),
         ChartSpec(chart="u", subgroup_size=5, baseline=2), ChartSpec(chart="xbar_r", subgroup_size=25, baseline=2)]

# Numbers as a hostile gauge writes them: huge integer literals, exponents past the range of
# floats, the largest floats, 32-bit edges.
HUGE = st.one_of(
    st.integers(1, 600).map(lambda k: "1" + "0" * k), st.integers(290, 400).map(lambda k: f"-9e{k}"),
    st.sampled_from(["1e308", "-1.7976931348623157e308", "1e100", "1.0000000000000002e100", "1e19",
                     "2147483647", "2147483648", "-1", "0", "1e-400", "-0.0", "4.5"]))
# Timestamps at the edges of the calendar, with any offset, and overlong ones.
STAMP = st.one_of(
    st.builds(lambda d, offset: d.replace(tzinfo=timezone(offset)).isoformat(),
              st.datetimes(), st.timedeltas(min_value=-timedelta(hours=23, minutes=59),
                                            max_value=timedelta(hours=23, minutes=59))),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1970-01-01T00:00:00Z",
                     "1969-12-31T23:59:59.999999Z", "2026-11-26T10:00:00" + "0" * 60 + "Z"]),
    st.text(max_size=80))
FIELD = st.sampled_from(["value", "values", "count", "n", "ts", "seq", "id"])


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """A reading-shaped object with some of its fields huge, deep, extreme or long."""
    parts = []
    for key in draw(st.lists(FIELD, min_size=1, max_size=4, unique=True)):
        if key == "ts":
            text = json.dumps(draw(STAMP))
        elif key == "values":
            text = "[" + ",".join(draw(st.lists(HUGE, max_size=MAX_SUBGROUP + 3))) + "]"
        elif key in ("seq", "id"):
            text = draw(st.one_of(HUGE, st.text(max_size=MAX_SEQ_CHARS + 20).map(json.dumps)))
        else:
            text = draw(HUGE)
        parts.append(f'"{key}": {text}')
    return ("{" + ", ".join(parts) + "}").encode()


# Nesting a parser would recurse into: balanced or not, arrays and objects, well past MAX_DEPTH.
DEEP = st.builds(lambda depth, opener, inner: (opener * depth + inner).encode(),
                 st.integers(MAX_DEPTH - 2, 20_000), st.sampled_from(["[", '{"a":', '[{"v":']),
                 st.sampled_from(["1", "", "1" + "]" * 40, '"[[[["']))


def _payload(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _check_bounds(reading: Reading) -> None:
    """What the engine and the columns need of an accepted reading."""
    assert all(abs(v) <= MAX_MAGNITUDE for v in reading.values or ())
    assert len(reading.values or ()) <= MAX_SUBGROUP
    assert reading.count is None or 0 <= reading.count <= MAX_COUNT
    assert reading.n is None or 1 <= reading.n <= MAX_COUNT
    assert len(reading.ts) <= MAX_TS_CHARS and reading.time.year >= MIN_YEAR
    assert reading.seq is None or (len(reading.seq) <= MAX_SEQ_CHARS and "\x00" not in reading.seq)
    if reading.seq is not None:
        reading.seq.encode()  # no lone surrogate


def _parse_and_feed(payload: bytes, max_payload: int = 65536) -> None:
    """Parse, then feed every chart kind: only IngestError may come out, with a message."""
    try:
        reading = parse_reading(payload, NOW, max_payload=max_payload)
    except IngestError as error:
        assert str(error)
        return
    _check_bounds(reading)
    for spec in SPECS:
        assembler = Assembler(spec)
        try:
            assembler.accept(reading)
        except IngestError as error:
            assert str(error)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.binary(max_size=200), JSON.map(_payload)))
def test_any_payload_is_a_reading_or_a_clear_error(payload: bytes) -> None:
    """Arbitrary bytes and arbitrary JSON: a reading within bounds, or IngestError."""
    _parse_and_feed(payload, max_payload=150)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(hostile(), DEEP, HUGE.map(str.encode), STAMP.map(lambda t: _payload({"value": 1, "ts": t}))))
def test_hostile_payloads_are_a_reading_or_a_clear_error(payload: bytes) -> None:
    """Deep nesting, huge numbers, extreme or long timestamps and identifiers: never a crash."""
    _parse_and_feed(payload)


def test_the_reproduced_poison_messages_are_rejected_with_their_reason() -> None:
    """Each message that stalled the bridge (issue 10) is an IngestError naming the bound."""
    cases = {
        b"[" * 5000: "more than 32 levels deep",
        b"1" + b"0" * 400: "401 digits is beyond the range of numbers",
        b'{"value": 1, "ts": "0001-01-01T00:00:00+01:00"}': "outside the years 1970..9998",
        b'{"value": 1, "ts": "9999-12-31T23:59:59-01:00"}': "outside the years 1970..9998",
        b'{"count": 1e19}': "count must be a whole number in 0..2147483647, got 1e+19",
        b'{"values": [1e160, -1e160]}': "values[0] must be a finite number within ±1e+100",
        b'{"value": 1, "ts": "2026-11-26T10:00:00.' + b"0" * 60 + b'Z"}': "ts is 81 characters long",
        b'{"count": 1, "n": 2147483648}': "n must be a whole number in 1..2147483647",
        b"1e308": "within ±1e+100",
        b'{"value": 1, "seq": "a\\u0000"}': "NUL",
        b'{"values": [' + b", ".join([b"1"] * 26) + b"]}": "a subgroup has at most 25",
    }
    for payload, reason in cases.items():
        try:
            parse_reading(payload, NOW)
        except IngestError as error:
            assert reason in str(error), (payload[:40], str(error))
        else:
            raise AssertionError(f"{payload[:40]!r} was accepted")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=5),
       st.one_of(st.none(), st.integers(0, 10**9).map(str)),
       st.datetimes(min_value=datetime(MIN_YEAR, 1, 1), max_value=datetime(2026, 11, 26, 12, 0),
                    timezones=st.just(timezone.utc)))
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
    assert parse_reading(b"-1e100", NOW).values == (-MAX_MAGNITUDE,)
