"""The hot events are written without building a pydantic model per event: hypothesis checks that
their bytes are exactly those of the contract's models (bridge.contract), floats, escapes, NaN,
infinity and optional fields included."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.contract import SampleEvent, ViolationEvent
from bridge.service import events
from bridge.spc import ChartSpec

FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-5, 1.5e-5, 9.999e-6, 1e-7, 1e15, 1e16, 1e22, -0.0, 5e-324, 10.0, 0.1])
TEXT = st.text(max_size=30, alphabet=st.characters(exclude_categories=["Cs"]))  # no lone surrogates
SPECS = [ChartSpec(chart="imr", center=10.0, sigma=1.0), ChartSpec(chart="xbar_r", subgroup_size=4),
         ChartSpec(chart="xbar_s", subgroup_size=5), ChartSpec(chart="p", subgroup_size=50),
         ChartSpec(chart="np", subgroup_size=50), ChartSpec(chart="c"), ChartSpec(chart="u", subgroup_size=3)]
SPREAD_FIELD = {"mr": "mr", "r": "range", "s": "s"}


def _model_sample(sample_id: int, row: dict[str, Any], spec: ChartSpec, seq: str | None) -> str:
    """The sample event as the contract's model writes it (what events.sample_event replaced)."""
    fields: dict[str, object] = {
        "sample_id": sample_id, "characteristic_id": row["characteristic_id"], "timestamp": row["ts"],
        "value": row["value"], "zone": row["zone"], "in_control": row["in_control"], "n": row["n"],
    }
    if spec.type.dispersion is not None and row["spread"] is not None:
        fields[SPREAD_FIELD[spec.type.dispersion]] = row["spread"]
    if row["ucl"] is not None and row["n"] != spec.subgroup_size:
        fields["ucl"], fields["lcl"] = row["ucl"], row["lcl"]
    if seq is not None:
        fields["seq"] = seq
    return SampleEvent(**fields).model_dump_json(exclude_unset=True)  # type: ignore[arg-type]


@settings(max_examples=1500, deadline=None)
@given(
    sample_id=st.integers(1, 2**62), characteristic_id=st.integers(1, 2**31 - 1), ts=TEXT,
    value=FLOATS | st.integers(-10**6, 10**6), zone=st.none() | st.sampled_from(["beyond_ucl", "zone_c_lower"]),
    in_control=st.none() | st.booleans(), n=st.integers(1, 60), spread=st.none() | FLOATS,
    limits=st.none() | st.tuples(FLOATS, FLOATS), spec=st.sampled_from(SPECS), seq=st.none() | TEXT,
)
def test_sample_event_is_the_models_json(sample_id: int, characteristic_id: int, ts: str, value: float,
                                         zone: str | None, in_control: bool | None, n: int,
                                         spread: float | None, limits: tuple[float, float] | None,
                                         spec: ChartSpec, seq: str | None) -> None:
    """Byte for byte, for any row of the samples table and any chart."""
    row = {"characteristic_id": characteristic_id, "ts": ts, "value": value, "zone": zone,
           "in_control": in_control, "n": n, "spread": spread,
           "ucl": limits[0] if limits else None, "lcl": limits[1] if limits else None}
    assert events.sample_event(sample_id, row, spec, seq) == _model_sample(sample_id, row, spec, seq)


@settings(max_examples=1000, deadline=None)
@given(violation_id=st.integers(1, 2**62), characteristic_id=st.integers(1, 2**31 - 1),
       sample_id=st.integers(1, 2**62), rule_id=st.integers(1, 8), rule_name=TEXT,
       severity=st.sampled_from(["CRITICAL", "WARNING"]), chart=st.sampled_from(["i", "mr", "xbar", "p"]))
def test_violation_event_is_the_models_json(violation_id: int, characteristic_id: int, sample_id: int,
                                            rule_id: int, rule_name: str, severity: str, chart: str) -> None:
    """Byte for byte, for any row of the violations table."""
    row = {"characteristic_id": characteristic_id, "sample_id": sample_id, "rule_id": rule_id,
           "rule_name": rule_name, "severity": severity, "chart": chart}
    expected = ViolationEvent(violation_id=violation_id, **row).model_dump_json()
    assert events.violation_event(violation_id, row) == expected
