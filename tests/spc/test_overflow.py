"""Extreme finite numbers: the engine never raises on them, never reports limits that are not finite
numbers, and a baseline whose limits overflow is refused with its reason (issue 10, point 6)."""

import json
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.spc import MAX_MAGNITUDE, ChartSpec, Evaluator, SampleError

BIG = sys.float_info.max
SPECS = [ChartSpec(chart="imr", baseline=2), ChartSpec(chart="imr", baseline=3, sigma_method="sd"),
         ChartSpec(chart="xbar_r", subgroup_size=3, baseline=2),
         ChartSpec(chart="xbar_s", subgroup_size=3, baseline=2, usl=1.0, lsl=-1.0),
         ChartSpec(chart="imr", baseline=2, usl=1.0),
         ChartSpec(chart="p", subgroup_size=10, baseline=2), ChartSpec(chart="np", subgroup_size=10, baseline=2),
         ChartSpec(chart="c", baseline=2), ChartSpec(chart="u", subgroup_size=10, baseline=2)]
# Floats anywhere in range, the largest ones, and integers beyond the range of floats.
EXTREME = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([BIG, -BIG, 1e308, -1e308]),
                    st.integers(min_value=-(10**400), max_value=10**400), st.integers(-3, 3))


def _all_finite(evaluator: Evaluator) -> bool:
    limits = evaluator.limits()
    assert limits is not None
    return all(math.isfinite(v) for chart in limits if chart is not None for v in chart)


def test_a_baseline_of_1e308_and_minus_1e308_is_refused_with_its_reason() -> None:
    """The issue's case: no null limits in monitoring; the chart stays in its baseline, says why,
    and the next baseline sets normal limits."""
    evaluator = Evaluator(ChartSpec(chart="imr", baseline=2))
    evaluator.add_values([1e308])
    evaluation, = evaluator.add_values([-1e308])
    assert evaluation.zone is None and evaluation.limits is None
    assert evaluator.phase == "baseline" and evaluator.limits() is None and evaluator.params is None
    assert evaluator.baseline_error == (
        "baseline samples 0..1 give limits beyond the range of numbers (values up to 1e+308): "
        "check the gauge's scaling; a new baseline starts at sample 2")
    assert evaluator.limits_version == 1  # a limits event tells the reason
    assert evaluator.baseline == [] and evaluator.baseline_start == 2
    restored = Evaluator(evaluator.spec, json.loads(json.dumps(evaluator.state())))
    assert restored.baseline_error == evaluator.baseline_error
    replay = restored.add_values([10.0]) + restored.add_values([11.0])
    assert [e.index for e in replay] == [2, 2, 3]
    assert restored.phase == "monitoring" and restored.baseline_error is None and _all_finite(restored)
    assert restored.params.center == 10.5  # type: ignore[union-attr]


def test_an_overflowing_subgroup_baseline_is_refused() -> None:
    """X-bar R with [1e160, -1e160] and the largest floats: no OverflowError, no limits."""
    evaluator = Evaluator(ChartSpec(chart="xbar_r", subgroup_size=2, baseline=2))
    evaluator.add_values([1e160, -1e160])
    evaluator.add_values([BIG, -BIG])
    assert evaluator.phase == "baseline" and "beyond the range of numbers" in (evaluator.baseline_error or "")


def test_a_stored_state_with_limits_that_are_not_finite_starts_a_new_baseline() -> None:
    """A state saved by an earlier version (limits of infinity, shown as null) is healed on restore."""
    spec = ChartSpec(chart="imr", baseline=2)
    old = Evaluator(spec)
    old.add_values([1.0])
    old.add_values([2.0])
    state = json.loads(json.dumps(old.state()))
    state["params"] = [0.0, math.inf, math.inf, math.inf]
    del state["baseline_error"]  # earlier versions had no such key
    restored = Evaluator(spec, json.loads(json.dumps(state)))
    assert restored.phase == "baseline" and restored.baseline_start == 2
    assert restored.baseline_error == ("the stored limits are not finite numbers: check the gauge's "
                                       "scaling; a new baseline starts at sample 2")
    assert restored.limits_version == old.limits_version + 1


def test_recalculation_that_would_overflow_is_refused_and_changes_nothing() -> None:
    """Excluding points makes a moving range span the gap: if that overflows, the limits stay."""
    a = 4e307
    evaluator = Evaluator(ChartSpec(chart="imr", baseline=6))
    for x in (-a, -a, -a, a, a, a):
        evaluator.add_values([x])
    before = evaluator.params
    assert evaluator.phase == "monitoring" and _all_finite(evaluator)
    with pytest.raises(ValueError, match="beyond the range of numbers"):
        evaluator.recalculate(exclude={0, 1, 4, 5})
    assert evaluator.params == before and evaluator.excluded == frozenset()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SPECS), st.lists(st.lists(EXTREME, min_size=1, max_size=3), min_size=1, max_size=12),
       st.integers(0, 12))
def test_extreme_finite_inputs_never_raise_and_never_give_limits_that_are_not_finite(
        spec: ChartSpec, samples: list[list[float]], cut: int) -> None:
    """Only SampleError (a refused sample, nothing changed) may come out; in monitoring every limit
    is a finite number; the state survives JSON at any point."""
    evaluator = Evaluator(spec)
    for i, sample in enumerate(samples):
        if i == cut:
            evaluator = Evaluator(spec, json.loads(json.dumps(evaluator.state())))
        before = evaluator.state()
        try:
            if spec.type.attribute:
                n = abs(sample[-1]) if len(sample) > 1 else None
                evaluator.add_count(abs(sample[0]), n)  # type: ignore[arg-type]
            else:
                evaluator.add_values(sample[:spec.subgroup_size])
        except SampleError as error:
            assert str(error) and evaluator.state() == before
            continue
        if evaluator.phase == "monitoring":
            assert _all_finite(evaluator)
            evaluator.capability()
        else:
            assert evaluator.limits() is None


@pytest.mark.parametrize(("options", "message"), [
    ({"chart": "imr", "center": 1e101, "sigma": 1.0}, "within ±1e\\+100"),
    ({"chart": "imr", "center": 0.0, "sigma": 1e300}, "within ±1e\\+100"),
    ({"chart": "imr", "center": 0.0, "ucl": 1e200}, "within ±1e\\+100"),
    ({"chart": "imr", "usl": -1e101}, "within ±1e\\+100"),
    ({"chart": "p", "subgroup_size": 50, "center": 1.5}, "p chart must be in 0..1"),
    ({"chart": "np", "subgroup_size": 50, "center": 51.0}, "np chart must be in 0..50"),
    ({"chart": "c", "center": -1.0}, "c chart must be in 0..1e\\+100"),
])
def test_fixed_values_outside_what_the_maths_can_take_are_refused(options: dict, message: str) -> None:
    """A fixed value whose limits or sigma could not be computed fails at start-up with the bound."""
    with pytest.raises(ValueError, match=message):
        ChartSpec(**options)


def test_the_bound_leaves_every_chart_finite_at_its_extremes() -> None:
    """Measurements of ±MAX_MAGNITUDE in subgroups of 25 over a baseline: finite limits, every chart."""
    for name in ("imr", "xbar_r", "xbar_s"):
        size = 1 if name == "imr" else 25
        evaluator = Evaluator(ChartSpec(chart=name, subgroup_size=size, baseline=3, usl=1.0, lsl=-1.0))
        for k in range(4):
            evaluator.add_values([MAX_MAGNITUDE * (-1) ** (k + j) for j in range(size)])
        assert evaluator.phase == "monitoring" and _all_finite(evaluator), name
        capability = evaluator.capability()
        assert capability is not None and capability.sigma_overall is not None
        assert math.isfinite(capability.sigma_overall)
