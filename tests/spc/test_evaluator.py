"""Phases, recalculation, fixed limits, bad samples and saved state of one streaming chart."""

import json
import math

import pytest

from bridge.spc import ChartSpec, Evaluator, SampleError


def feed(evaluator: Evaluator, values: list[float]) -> list:
    """Feed single values; return every evaluation produced."""
    return [e for x in values for e in evaluator.add_values([x])]


def test_baseline_points_are_unjudged_then_replayed_against_their_limits() -> None:
    """Phase I: no zone until the K-th sample, which returns all K evaluations in order."""
    evaluator = Evaluator(ChartSpec(chart="imr", baseline=5))
    first = feed(evaluator, [10.0, 11.0, 9.0, 10.0])
    assert [(e.zone, e.in_control) for e in first] == [(None, None)] * 4
    assert evaluator.phase == "baseline" and evaluator.limits() is None
    replay = evaluator.add_values([30.0])
    assert [e.index for e in replay] == [0, 1, 2, 3, 4]
    assert replay[-1].zone == "beyond_ucl" and replay[-1].violations[0].rule_id == 1
    assert evaluator.phase == "monitoring" and evaluator.limits_version == 1


def test_limits_stay_fixed_after_the_baseline_until_recalculated() -> None:
    """Phase II samples never move the limits; recalculate() excludes chosen baseline samples."""
    evaluator = Evaluator(ChartSpec(chart="imr", baseline=5))
    feed(evaluator, [10.0, 11.0, 9.0, 10.0, 30.0])
    before = evaluator.limits()
    feed(evaluator, [50.0] * 20)
    assert evaluator.limits() == before
    params = evaluator.recalculate(exclude={4})
    assert params.center == 10.0 and evaluator.limits_version == 2
    assert evaluator.limits() != before
    with pytest.raises(ValueError, match="not in the baseline"):
        evaluator.recalculate(exclude={7})
    with pytest.raises(ValueError, match="too few"):
        evaluator.recalculate(exclude={0, 1, 2, 3})
    assert evaluator.params == params


def test_start_baseline_collects_a_new_phase_one() -> None:
    """After start_baseline the next K samples set new limits."""
    evaluator = Evaluator(ChartSpec(chart="imr", baseline=3))
    feed(evaluator, [1.0, 2.0, 3.0])
    evaluator.start_baseline()
    assert evaluator.phase == "baseline"
    replay = feed(evaluator, [100.0, 101.0, 102.0])[-3:]
    assert [e.index for e in replay] == [3, 4, 5] and evaluator.params.center == 101.0  # type: ignore[union-attr]


def test_fixed_limits_monitor_from_the_first_sample() -> None:
    """centre and sigma fixed: no baseline, zones at once; recalculation is refused."""
    evaluator = Evaluator(ChartSpec(chart="xbar_r", subgroup_size=4, center=74.0, sigma=0.01))
    evaluation, = evaluator.add_values([74.0, 74.01, 73.99, 74.0])
    assert evaluation.zone == "zone_c_upper"
    limits, r_limits = evaluator.limits()  # type: ignore[misc]
    assert limits.ucl == pytest.approx(74.015) and r_limits.center == pytest.approx(0.02059)
    with pytest.raises(ValueError, match="fixed"):
        evaluator.recalculate()


def test_partly_fixed_center_with_sigma_from_the_baseline() -> None:
    """A fixed centre (a target) with sigma estimated from the baseline."""
    evaluator = Evaluator(ChartSpec(chart="imr", baseline=3, center=0.0))
    feed(evaluator, [1.0, 2.0, 4.0])
    assert evaluator.params.center == 0.0  # type: ignore[union-attr]
    assert evaluator.params.sigma == pytest.approx(1.5 / 1.128)  # type: ignore[union-attr]


def test_attribute_chart_with_a_standard_needs_no_baseline() -> None:
    """A p chart with a fixed p-bar gets sigma from the binomial; limits per sample size."""
    evaluator = Evaluator(ChartSpec(chart="p", subgroup_size=100, center=0.1))
    nominal, = evaluator.add_count(10, 100)
    small, = evaluator.add_count(6, 25)
    assert nominal.limits.ucl == pytest.approx(0.1 + 3 * math.sqrt(0.09 / 100))  # type: ignore[union-attr]
    assert small.limits.ucl == pytest.approx(0.1 + 3 * math.sqrt(0.09 / 25))  # type: ignore[union-attr]
    assert small.value == 0.24 and small.zone == "zone_a_upper"


def test_subgroup_with_a_missing_measurement_gets_its_own_limits() -> None:
    """A subgroup of 3 on an n = 5 chart is judged against n = 3 limits."""
    evaluator = Evaluator(ChartSpec(chart="xbar_s", subgroup_size=5, center=0.0, sigma=1.0))
    evaluation, = evaluator.add_values([1.0, 1.0, 1.0])
    assert evaluation.n == 3 and evaluation.limits.ucl == pytest.approx(3 / math.sqrt(3))  # type: ignore[union-attr]


@pytest.mark.parametrize(("chart", "call", "message"), [
    ("imr", lambda e: e.add_values([]), "at least one"),
    ("imr", lambda e: e.add_values([1.0, 2.0]), "exceeds subgroup_size"),
    ("imr", lambda e: e.add_values([math.nan]), "finite"),
    ("imr", lambda e: e.add_values([math.inf]), "finite"),
    ("imr", lambda e: e.add_values(["7"]), "finite"),
    ("imr", lambda e: e.add_count(3, 5), "measurements, not counts"),
    ("p", lambda e: e.add_values([1.0]), "counts, not measurements"),
    ("p", lambda e: e.add_count(-1, 50), ">= 0"),
    ("p", lambda e: e.add_count(1.5, 50), "whole number"),
    ("p", lambda e: e.add_count(51, 50), "exceeds the sample size"),
    ("p", lambda e: e.add_count(1, 0), "n=0"),
    ("np", lambda e: e.add_count(math.nan, 50), "finite"),
    ("c", lambda e: e.add_count(3, 7), "u chart"),
])
def test_bad_samples_raise_a_clear_error_and_change_nothing(chart, call, message) -> None:  # type: ignore[no-untyped-def]
    """Every rejected sample leaves the evaluator exactly as it was."""
    spec = ChartSpec(chart=chart, subgroup_size=1 if chart == "imr" else 50, baseline=3)
    evaluator = Evaluator(spec)
    before = evaluator.state()
    with pytest.raises(SampleError, match=message):
        call(evaluator)
    assert evaluator.state() == before


@pytest.mark.parametrize(("options", "message"), [
    ({"chart": "pareto"}, "unknown chart"),
    ({"chart": "imr", "subgroup_size": 3}, "subgroup_size 1"),
    ({"chart": "xbar_r", "subgroup_size": 26}, "2..25"),
    ({"chart": "xbar_r", "subgroup_size": 1}, "2..25"),
    ({"chart": "imr", "baseline": 1}, "at least 2"),
    ({"chart": "imr", "sigma_method": "r"}, "does not apply"),
    ({"chart": "imr", "center": 1.0, "ucl": 0.5}, "lcl < center < ucl"),
    ({"chart": "imr", "ucl": 3.0}, "need a fixed center"),
    ({"chart": "imr", "sigma": -1.0}, "positive"),
    ({"chart": "imr", "center": math.nan}, "finite"),
    ({"chart": "imr", "usl": 1.0, "lsl": 2.0}, "usl must be above lsl"),
    ({"chart": "c", "usl": 1.0}, "measurement charts"),
])
def test_bad_chart_specs_are_refused(options: dict, message: str) -> None:
    """Impossible configurations fail at start-up with a message naming the problem."""
    with pytest.raises(ValueError, match=message):
        ChartSpec(**options)


@pytest.mark.parametrize("cut", [2, 7, 30])
def test_state_round_trips_through_json_mid_stream(cut: int) -> None:
    """Saved and restored at any point (baseline or monitoring), the stream goes on unchanged."""
    spec = ChartSpec(chart="imr", baseline=10)
    values = [10.0 + ((i * 7) % 5) * 0.3 for i in range(60)]
    whole = Evaluator(spec)
    expected = feed(whole, values)
    part = Evaluator(spec)
    got = feed(part, values[:cut])
    restored = Evaluator(spec, json.loads(json.dumps(part.state())))
    got += feed(restored, values[cut:])
    assert got == expected
    assert restored.state() == whole.state()


def test_run_straddling_a_restart_still_fires() -> None:
    """Rule 2 over nine points with a save/restore after the fifth."""
    spec = ChartSpec(chart="imr", center=0.0, sigma=1.0)
    evaluator = Evaluator(spec)
    feed(evaluator, [0.5] * 5)
    evaluator = Evaluator(spec, json.loads(json.dumps(evaluator.state())))
    last = feed(evaluator, [0.5] * 4)[-1]
    assert [v.rule_id for v in last.violations] == [2]


def test_state_stays_small_and_flat_with_a_long_history() -> None:
    """The saved state does not grow with the number of samples (cost per point is flat)."""
    evaluator = Evaluator(ChartSpec(chart="xbar_r", subgroup_size=5))
    sizes = []
    for i in range(3000):
        evaluator.add_values([float((i * k) % 7) for k in range(1, 6)])
        if i in (100, 2999):
            sizes.append(len(json.dumps(evaluator.state())))
    assert sizes[0] == pytest.approx(sizes[1], rel=0.05) and sizes[1] < 4000


def test_capability_needs_spec_limits_and_established_limits() -> None:
    """No spec limits or no limits yet: no capability."""
    assert Evaluator(ChartSpec(chart="imr", center=0.0, sigma=1.0)).capability() is None
    evaluator = Evaluator(ChartSpec(chart="imr", baseline=3, usl=10.0))
    feed(evaluator, [1.0, 2.0])
    assert evaluator.capability() is None
    feed(evaluator, [3.0])
    cap = evaluator.capability()
    assert cap is not None and cap.cp is None and cap.cpk == pytest.approx((10 - 2) / (3 * 1 / 1.128))
