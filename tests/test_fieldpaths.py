"""JMESPath field paths read readings out of vendor JSON (Kepware IoT Gateway, Node-RED): every part
is checked as bridge.ingest checks a JSON reading, and anything a path cannot use is an IngestError
with its reason, never another exception."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.assemble import Assembler
from bridge.config import CharacteristicConfig, load_characteristics
from bridge.fieldpaths import FieldPaths, JsonDocument, compile_path, read_reading
from bridge.ingest import MAX_SEQ_CHARS, IngestError, Reading, parse_document
from bridge.spc import MAX_MAGNITUDE, MAX_SUBGROUP

EXAMPLE = Path(__file__).resolve().parents[1] / "characteristics.example.toml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
MS = 1764590400000  # 2025-12-01T12:00:00Z
BORE = "values[?id=='Channel1.Device1.Bore']"
KEPWARE = {"timestamp": MS, "values": [
    {"id": "Channel1.Device1.Bore", "v": 74.01, "q": True, "t": MS},
    {"id": "Channel1.Device1.Length", "v": 120.02, "q": True, "t": MS + 250},
]}


def paths(chart: str = "imr", **keys: Any) -> FieldPaths:
    """The field paths of a characteristic with ``keys``, validated as the characteristics file is."""
    table = {"id": 1, "name": "Bore", "topic": "plant1/line3/iotgateway", "chart": chart, **keys}
    found = CharacteristicConfig.model_validate(table).field_paths()
    assert found is not None
    return found


def read(document: Any, chart: str = "imr", **keys: Any) -> Reading:
    """The reading ``keys`` select in ``document`` (as decoded from its JSON text) at NOW."""
    return read_reading(parse_document(json.dumps(document).encode()), paths(chart, **keys), NOW)


def refusal(document: Any, chart: str = "imr", **keys: Any) -> str:
    """The reason read() refuses ``document``."""
    with pytest.raises(IngestError) as caught:
        read(document, chart, **keys)
    return str(caught.value)


def example_config(cid: int) -> CharacteristicConfig:
    """Characteristic ``cid`` of characteristics.example.toml."""
    return next(c for c in load_characteristics(EXAMPLE) if c.id == cid)


def example(cid: int) -> FieldPaths:
    """The field paths of characteristic ``cid`` of characteristics.example.toml."""
    found = example_config(cid).field_paths()
    assert found is not None
    return found


# --- the sources of characteristics.example.toml ---------------------------------------------

def test_kepware_message_feeds_both_characteristics_of_its_topic() -> None:
    document = parse_document(json.dumps(KEPWARE).encode())
    bore, length = (read_reading(document, example(cid), NOW) for cid in (6, 7))
    assert bore == Reading((74.01,), True, None, None, "2025-12-01T12:00:00.000Z",
                           datetime(2025, 12, 1, 12, tzinfo=timezone.utc), None, stamped=True)
    assert (length.values, length.single, length.ts) == ((120.02,), True, "2025-12-01T12:00:00.250Z")
    assert length.time == datetime(2025, 12, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc)
    # the assembler takes them: the bore a sample of its own, the length one of a subgroup of five
    assert len(Assembler(example_config(6).chart_spec()).accept(bore).completed) == 1
    assert Assembler(example_config(7).chart_spec()).accept(length).completed == []


def test_kepware_bad_quality_and_missing_tag_are_refused_for_that_tag_alone() -> None:
    message = {**KEPWARE, "values": [{**KEPWARE["values"][0], "q": False}, KEPWARE["values"][1]]}
    document = parse_document(json.dumps(message).encode())
    with pytest.raises(IngestError) as caught:
        read_reading(document, example(6), NOW)
    assert str(caught.value) == f"bad quality: quality_path {BORE}.q | [0] is false"
    assert read_reading(document, example(7), NOW).values == (120.02,)
    without_bore = parse_document(json.dumps({**KEPWARE, "values": KEPWARE["values"][1:]}).encode())
    with pytest.raises(IngestError, match=r"^quality_path .*Bore'\]\.q \| \[0\] selects nothing in this message$"):
        read_reading(without_bore, example(6), NOW)


def test_node_red_payload_keeps_its_iso_timestamp() -> None:
    payload = b'{"bore": 74.01, "time": "2026-12-01T11:59:58.125Z"}'
    reading = read_reading(parse_document(payload), example(8), NOW)
    assert (reading.values, reading.ts, reading.stamped) == ((74.01,), "2026-12-01T11:59:58.125Z", True)
    assert reading.time == datetime(2026, 12, 1, 11, 59, 58, 125_000, tzinfo=timezone.utc)


def test_kepware_example_expression_selects_the_tag() -> None:
    path = compile_path(f"{BORE}.v | [0]")
    assert path.compiled.search(KEPWARE) == path.search(JsonDocument(KEPWARE)) == 74.01


# --- values ----------------------------------------------------------------------------------

def test_without_timestamp_path_the_reading_has_the_receipt_time() -> None:
    reading = read({"bore": 3}, value_path="bore")
    assert (reading.ts, reading.time, reading.stamped, reading.seq) == ("2026-12-01T12:00:00Z", NOW, False, None)


@pytest.mark.parametrize("document, chart, keys, reason", [
    ({"x": 1}, "imr", {"value_path": "bore"}, "value_path bore selects nothing in this message"),
    ({"bore": None}, "imr", {"value_path": "bore"}, "value_path bore selects nothing in this message"),
    ({"bore": "74.01"}, "imr", {"value_path": "bore"}, 'value_path bore selects "74.01", not a number'),
    ({"bore": True}, "imr", {"value_path": "bore"}, "value_path bore selects true, not a number"),
    ({"bore": {"v": 1}}, "imr", {"value_path": "bore"}, 'value_path bore selects {"v": 1}, not a number'),
    ({"bore": "x" * 100}, "imr", {"value_path": "bore"}, f'value_path bore selects "{"x" * 59}..., not a number'),
    ({"bore": [1.0]}, "imr", {"value_path": "bore"},
     "value_path bore selects [1.0], not a number (a list is a whole subgroup, for charts with subgroup_size "
     "above 1; add | [0] to take its first element)"),
    ({"bore": 1e300}, "imr", {"value_path": "bore"},
     f"value_path bore must be a finite number within ±{MAX_MAGNITUDE:g} (check the gauge's units and scaling)"),
    ({"bore": []}, "xbar_r", {"value_path": "bore", "subgroup_size": 5},
     "value_path bore must be a non-empty list of numbers"),
    ({"bore": [1] * (MAX_SUBGROUP + 1)}, "xbar_r", {"value_path": "bore", "subgroup_size": 5},
     f"value_path bore holds {MAX_SUBGROUP + 1} measurements; a subgroup has at most {MAX_SUBGROUP}"),
    ({"bore": [1, "2"]}, "xbar_r", {"value_path": "bore", "subgroup_size": 5},
     'value_path bore[1] must be a number, got "2"'),
    ({"c": 2.5}, "c", {"value_path": "c"}, "value_path c must be a whole number, got 2.5"),
    ({"c": -1}, "c", {"value_path": "c"}, "value_path c must be a whole number in 0..2147483647, got -1"),
    ({"c": [1]}, "c", {"value_path": "c"}, "value_path c selects [1], not a number"),
    ({"c": 3}, "p", {"value_path": "c", "n_path": "n", "subgroup_size": 50},
     "n_path n selects nothing in this message"),
    ({"c": 3, "n": 0}, "p", {"value_path": "c", "n_path": "n", "subgroup_size": 50},
     "n_path n must be a whole number in 1..2147483647, got 0"),
    ({"v": "x"}, "imr", {"value_path": "abs(v)"},
     'value_path abs(v) cannot be evaluated on this message: In function abs(), invalid type for value: x, '
     'expected one of: [\'number\'], received: "string"'),
])
def test_refusals_name_the_path_and_what_it_selected(document: Any, chart: str, keys: dict[str, Any],
                                                     reason: str) -> None:
    assert refusal(document, chart, **keys) == reason


def test_a_list_is_a_whole_subgroup_on_subgrouped_charts() -> None:
    reading = read({"bores": [74.01, 74.0, 73.99]}, "xbar_r", value_path="bores", subgroup_size=5)
    assert (reading.values, reading.single) == ((74.01, 74.0, 73.99), False)
    single = read({"bores": [74.01, 74.0]}, "xbar_r", value_path="bores[0]", subgroup_size=5)
    assert (single.values, single.single) == ((74.01,), True)


def test_attribute_charts_read_a_count_and_its_sample_size() -> None:
    reading = read({"rejects": 3, "inspected": 48}, "p", value_path="rejects", n_path="inspected", subgroup_size=50)
    assert (reading.values, reading.count, reading.n, reading.single) == (None, 3, 48, False)
    assert read({"defects": 4.0}, "c", value_path="defects").count == 4
    assert Assembler(example_config(3).chart_spec()).accept(reading).sample_idx == 0


def test_arithmetic_beyond_floats_is_a_refusal() -> None:
    document = parse_document(b'{"v": [' + b"9" * 309 + b']}')
    with pytest.raises(IngestError, match=r"^value_path avg\(v\) cannot be evaluated on this message: "):
        read_reading(document, paths(value_path="avg(v)"), NOW)
    with pytest.raises(IngestError, match=r"^value_path ceil\(to_number\(s\)\) cannot be evaluated"):
        read_reading({"s": "1e999"}, paths(value_path="ceil(to_number(s))"), NOW)


# --- timestamps ------------------------------------------------------------------------------

@pytest.mark.parametrize("unit, sent, ts, time", [
    ("ms", MS, "2025-12-01T12:00:00.000Z", datetime(2025, 12, 1, 12, tzinfo=timezone.utc)),
    ("ms", MS + 123, "2025-12-01T12:00:00.123Z", datetime(2025, 12, 1, 12, 0, 0, 123_000, tzinfo=timezone.utc)),
    ("ms", MS + 0.5, "2025-12-01T12:00:00.000500Z", datetime(2025, 12, 1, 12, 0, 0, 500, tzinfo=timezone.utc)),
    ("s", MS // 1000, "2025-12-01T12:00:00.000Z", datetime(2025, 12, 1, 12, tzinfo=timezone.utc)),
    ("s", MS / 1000 + 0.25, "2025-12-01T12:00:00.250Z", datetime(2025, 12, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc)),
    ("s", 0, "1970-01-01T00:00:00.000Z", datetime(1970, 1, 1, tzinfo=timezone.utc)),
    ("iso", "2026-12-01T13:00:00+01:00", "2026-12-01T13:00:00+01:00", NOW),
])
def test_timestamp_units(unit: str, sent: Any, ts: str, time: datetime) -> None:
    reading = read({"v": 1, "t": sent}, value_path="v", timestamp_path="t", timestamp_unit=unit)
    assert (reading.ts, reading.time, reading.stamped) == (ts, time, True)


def test_iso_is_the_default_unit() -> None:
    assert paths(value_path="v", timestamp_path="t").unit == "iso"
    assert read({"v": 1, "t": "2026-12-01T12:00:00Z"}, value_path="v", timestamp_path="t").time == NOW


def test_one_instant_is_written_one_way() -> None:
    """The idempotency key of a stamped reading is its instant: 1764590400 s and 1764590400000 ms agree."""
    seconds = read({"v": 1, "t": MS // 1000}, value_path="v", timestamp_path="t", timestamp_unit="s")
    millis = read({"v": 1, "t": MS}, value_path="v", timestamp_path="t", timestamp_unit="ms")
    assert (seconds.ts, seconds.time) == (millis.ts, millis.time)


FUTURE_MS = int((NOW + timedelta(hours=2)).timestamp() * 1000)


@pytest.mark.parametrize("unit, sent, reason", [
    ("ms", "1764590400000", 'timestamp_path t must be a number of milliseconds since 1970-01-01 UTC, '
                            'got "1764590400000"'),
    ("s", True, "timestamp_path t must be a number of seconds since 1970-01-01 UTC, got true"),
    ("ms", -1, "timestamp_path t -1 is outside the years 1970..9998 (UTC)"),
    ("s", 10**300, f"timestamp_path t {str(10**300)[:40]} is outside the years 1970..9998 (UTC)"),
    ("s", 253402300799, "timestamp_path t 253402300799 is outside the years 1970..9998 (UTC)"),  # 9999-12-31
    ("ms", FUTURE_MS, f"timestamp_path t {FUTURE_MS} is in the future (more than 1:00:00 ahead)"),
    ("iso", MS, "timestamp_path t must be an ISO 8601 string such as 2026-11-26T12:00:00Z"),
    ("iso", "2026-12-01T12:00:00", "timestamp_path t '2026-12-01T12:00:00' has no time zone (add Z or +hh:mm)"),
    ("iso", "yesterday", "timestamp_path t 'yesterday' is not an ISO 8601 timestamp"),
    ("iso", "2026-12-01T12:00:00" + "0" * 60 + "Z", "timestamp_path t is 80 characters long; at most 64 are kept"),
    ("iso", "9999-12-31T23:00:00Z", "timestamp_path t '9999-12-31T23:00:00Z' is outside the years 1970..9998 (UTC)"),
])
def test_timestamp_refusals(unit: str, sent: Any, reason: str) -> None:
    assert refusal({"v": 1, "t": sent}, value_path="v", timestamp_path="t", timestamp_unit=unit) == reason


def test_a_timestamp_path_that_selects_nothing_is_a_refusal() -> None:
    reason = refusal({"v": 1}, value_path="v", timestamp_path="values[0].t", timestamp_unit="ms")
    assert reason == "timestamp_path values[0].t selects nothing in this message"


# --- quality ---------------------------------------------------------------------------------

@pytest.mark.parametrize("good, sent, accepted", [
    (None, True, True), (None, False, False), (None, 1, False), (None, "true", False),
    ([192], 192, True), ([192], 192.0, True), ([192], 0, False), ([192], True, False),
    (["Good", "Good_LocalOverride"], "Good_LocalOverride", True), (["Good"], "Bad", False),
    ([True], {"q": True}, False), ([1.5], 1.5, True),
])
def test_quality(good: list[Any] | None, sent: Any, accepted: bool) -> None:
    keys = {"value_path": "v", "quality_path": "q", **({"good_quality": good} if good is not None else {})}
    if accepted:
        assert read({"v": 1, "q": sent}, **keys).values == (1.0,)
    else:
        assert refusal({"v": 1, "q": sent}, **keys) == f"bad quality: quality_path q is {json.dumps(sent)}"


def test_quality_is_judged_before_the_value() -> None:
    """A bad-quality tag often carries no usable value: the reason given is its quality."""
    assert refusal({"v": None, "q": False}, value_path="v", quality_path="q") == "bad quality: quality_path q is false"


# --- seq -------------------------------------------------------------------------------------

def test_seq_path_identifies_the_reading_as_json_seq_does() -> None:
    numeric = read({"v": 1, "n": 17}, value_path="v", seq_path="n")
    assert (numeric.seq, numeric.numeric_seq, numeric.sent_seq()) == ("17", True, 17)
    text = read({"v": 1, "m": {"id": "a-17"}}, value_path="v", seq_path="m.id")
    assert (text.seq, text.numeric_seq) == ("a-17", False)


@pytest.mark.parametrize("sent, reason", [
    ("", "seq_path s must be a non-empty string or an integer"),
    (True, "seq_path s must be a non-empty string or an integer"),
    (1.5, "seq_path s must be a non-empty string or an integer"),
    ("x" * (MAX_SEQ_CHARS + 1), f"seq_path s is longer than {MAX_SEQ_CHARS} characters"),
    ("a\x00b", "seq_path s holds a NUL or an unpaired surrogate character"),
    (None, "seq_path s selects nothing in this message"),
])
def test_seq_refusals(sent: Any, reason: str) -> None:
    assert refusal({"v": 1, "s": sent}, value_path="v", seq_path="s") == reason


# --- tag lookups: one pass over a message's tags, jmespath's result ------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["values", "id", "v", "q", "t", "s", "n", "timestamp"]) | st.text(max_size=4),
        children, max_size=5),
    max_leaves=25)
LOOKUPS = [f"{BORE}.v | [0]", f"{BORE}", f"{BORE}.v", f"{BORE} | [0].v", "values[?'x'==id].q | [0]",
           f"{BORE}.v | [0] | to_string(@)", "data.values[?id=='x'].t | [-1]"]
NOT_LOOKUPS = ["values[?id==`1`].v | [0]", "values[?v > `1`].v | [0]", "values[?id!='x'].v | [0]",
               "values[?id==name].v | [0]", "values[?'x'=='x'].v", "values[0].v", "[values[?id=='x'].v | [0]]",
               f"{BORE}[].v | [0]"]


def test_filters_on_a_tag_id_are_lookups() -> None:
    assert all(compile_path(expression).lookup is not None for expression in LOOKUPS)
    assert all(compile_path(expression).lookup is None for expression in NOT_LOOKUPS)


TAG_IDS = st.sampled_from(["Channel1.Device1.Bore", "x", "y"]) | st.integers(0, 2) | st.none()
ELEMENT = st.one_of(
    st.fixed_dictionaries({"id": TAG_IDS, "v": JSON, "q": JSON, "t": JSON}),
    st.fixed_dictionaries({}, optional={"id": TAG_IDS, "v": st.integers() | st.none()}),
    JSON)
TAGGED = st.fixed_dictionaries({}, optional={"values": st.lists(ELEMENT, max_size=6) | JSON,
                                             "data": st.fixed_dictionaries({"values": st.lists(ELEMENT, max_size=4)})})


@settings(max_examples=400, deadline=None)
@given(TAGGED, st.sampled_from(LOOKUPS + NOT_LOOKUPS))
def test_a_lookup_selects_what_jmespath_selects(document: dict[str, Any], expression: str) -> None:
    path = compile_path(expression)
    assert path.search(JsonDocument(document)) == path.compiled.search(document)


def test_characteristics_reading_one_document_share_its_tag_index() -> None:
    shared = JsonDocument(parse_document(json.dumps(KEPWARE).encode()))
    readings = [read_reading(shared, example(cid), NOW) for cid in (6, 7)]
    assert readings == [read_reading(KEPWARE, example(cid), NOW) for cid in (6, 7)]
    assert len(shared._indexes) == 1  # one pass over "values" served both, three paths each


# --- never anything but IngestError ----------------------------------------------------------

# Parts that are often what a path wants, else anything: each check is reached.
NUMBER = st.integers(-5, 2**31) | st.floats(-1e6, 1e6) | st.sampled_from([10**308, -(10**308), 1e308, 2.5])
STAMP = (st.integers(MS - 10**6, MS + 10**6) | st.integers(0, 10**10) | st.floats(0, 4e12)
         | st.datetimes(timezones=st.just(timezone.utc)).map(datetime.isoformat))
QUALITY = st.booleans() | st.sampled_from([192, 0, "Good", "Bad"])
SEQ = st.integers() | st.text(max_size=8)


def part(likely: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a likely value, sometimes any JSON."""
    return st.one_of(likely, likely, likely, JSON)


TAG = st.fixed_dictionaries({"id": part(st.just("Channel1.Device1.Bore")), "v": part(NUMBER),
                             "q": part(QUALITY), "t": part(STAMP)})
KEPWARE_LIKE = st.fixed_dictionaries({"timestamp": part(STAMP), "values": st.lists(TAG, max_size=6)})
FLAT = st.fixed_dictionaries({}, optional={"v": part(NUMBER), "t": part(STAMP), "q": part(QUALITY),
                                           "s": part(SEQ), "n": part(NUMBER)})
CONFIGS = [
    paths(value_path=f"{BORE}.v | [0]", timestamp_path=f"{BORE}.t | [0]", timestamp_unit="ms",
          quality_path=f"{BORE}.q | [0]"),
    paths(value_path="v", timestamp_path="t", timestamp_unit="s", seq_path="s"),
    paths(value_path="v", timestamp_path="t", quality_path="q", good_quality=[192, "Good"]),
    paths("xbar_s", value_path="values[*].v", subgroup_size=4, timestamp_path="timestamp", timestamp_unit="ms"),
    paths("u", value_path="values[0].v", n_path="n", subgroup_size=5, seq_path="values[0].id"),
    paths(value_path="avg(values[*].v)"),
    paths(value_path="ceil(to_number(v))"),
    paths(value_path="sort(values[*].v) | [0]"),
    paths(value_path="max_by(values, &v).v"),
    paths(value_path="sum(values[*].t)", timestamp_path="to_string(t)"),
]


@settings(max_examples=400, deadline=None)
@given(st.one_of(JSON, KEPWARE_LIKE, FLAT, FLAT), st.sampled_from(CONFIGS))
def test_any_document_is_a_reading_or_an_ingest_error(document: Any, config: FieldPaths) -> None:
    try:
        reading = read_reading(document, config, NOW)
    except IngestError as error:
        reason = str(error)
        assert reason and "\n" not in reason
        reason.encode("utf-8")  # storable: no unpaired surrogate
        assert "\x00" not in reason
        return
    if reading.values is not None:
        assert 1 <= len(reading.values) <= MAX_SUBGROUP
        assert all(abs(v) <= MAX_MAGNITUDE for v in reading.values)
    else:
        assert reading.count is not None and reading.count >= 0
    assert reading.time.tzinfo is not None and reading.time <= NOW + timedelta(hours=1)
