"""Zones on every boundary, on the centre line, with asymmetric and clamped limits."""

import pytest

from bridge.spc import ZONES, ChartSpec, Evaluator
from bridge.spc.zones import classify


def zone_of(evaluator: Evaluator, x: float) -> str | None:
    """The zone the evaluator gives a single value."""
    return evaluator.add_values([x])[0].zone


@pytest.mark.parametrize(("x", "zone"), [
    (13.0001, "beyond_ucl"), (13.0, "zone_a_upper"),   # exactly on the UCL: inside
    (12.5, "zone_a_upper"), (12.0, "zone_b_upper"),     # exactly on 2 sigma: zone B
    (11.5, "zone_b_upper"), (11.0, "zone_c_upper"),     # exactly on 1 sigma: zone C
    (10.0, "zone_c_upper"),                             # exactly on the centre line
    (9.0, "zone_c_lower"), (8.0, "zone_b_lower"), (7.5, "zone_a_lower"),
    (7.0, "zone_a_lower"), (6.9999, "beyond_lcl"),
])
def test_symmetric_zones_and_boundaries(x: float, zone: str) -> None:
    """Boundaries belong to the zone nearer the centre; the centre line is zone_c_upper."""
    evaluator = Evaluator(ChartSpec(chart="imr", center=10.0, sigma=1.0))
    assert zone_of(evaluator, x) == zone


def test_zone_names_are_the_seeds() -> None:
    """The eight names, top to bottom, as in the OpenSPC seed."""
    assert ZONES == ("beyond_ucl", "zone_a_upper", "zone_b_upper", "zone_c_upper",
                     "zone_c_lower", "zone_b_lower", "zone_a_lower", "beyond_lcl")


@pytest.mark.parametrize(("x", "zone"), [
    (16.0, "zone_a_upper"), (16.5, "beyond_ucl"), (14.0, "zone_b_upper"), (14.5, "zone_a_upper"),
    (12.0, "zone_c_upper"), (9.0, "zone_c_lower"), (8.0, "zone_b_lower"), (7.5, "zone_a_lower"),
    (7.0, "zone_a_lower"), (6.5, "beyond_lcl"),
])
def test_asymmetric_fixed_limits(x: float, zone: str) -> None:
    """centre 10, UCL 16, LCL 7: sigma is 2 above and 1 below; never the midpoint."""
    evaluator = Evaluator(ChartSpec(chart="imr", center=10.0, ucl=16.0, lcl=7.0))
    limits, _ = evaluator.limits()  # type: ignore[misc]
    assert (limits.center, limits.ucl, limits.lcl) == (10.0, 16.0, 7.0)
    assert (limits.sd_upper, limits.sd_lower) == (2.0, 1.0)
    assert zone_of(evaluator, x) == zone


def test_clamped_lcl_keeps_zone_lines_from_sigma() -> None:
    """p chart, p = 0.05, n = 50: LCL 0, yet a zero count lies in zone B below, not beyond."""
    evaluator = Evaluator(ChartSpec(chart="p", subgroup_size=50, center=0.05))
    limits, _ = evaluator.limits()  # type: ignore[misc]
    assert limits.lcl == 0.0 and limits.center - 3 * limits.sd_lower < 0.0
    evaluation, = evaluator.add_count(0, 50)
    assert evaluation.zone == "zone_b_lower" and evaluation.in_control


def test_classify_is_the_single_zone_function() -> None:
    """classify() decides with strict comparisons on both sides."""
    assert classify(1.0, 0.0, 3.0, -3.0, 1.0, 1.0) == "zone_c_upper"
    assert classify(-1.0, 0.0, 3.0, -3.0, 1.0, 1.0) == "zone_c_lower"
    assert classify(-2.0000001, 0.0, 3.0, -3.0, 1.0, 1.0) == "zone_a_lower"
