"""Zones of a control chart, named as the OpenSPC seed names them.

A point's distance from the centre line is compared with the chart's sigma lines, strictly:
a point exactly on a boundary belongs to the zone nearer the centre line, so a point exactly on
the UCL is in ``zone_a_upper`` (not beyond it) and one exactly on the 2-sigma line is in zone B.
A point exactly on the centre line is reported as ``zone_c_upper`` (zones need a name), but for
the run rules it lies on neither side and breaks a same-side run.
Limits may be asymmetric, so the upper and lower sigma are separate; ``beyond_*`` is decided by
the control limits themselves, which for charts of non-negative statistics have the LCL clamped
at 0 while the zone lines still come from sigma.
"""

from typing import NamedTuple


class Limits(NamedTuple):
    """Centre line, control limits and the 1-sigma distances of one chart at one n."""

    center: float
    ucl: float
    lcl: float
    sd_upper: float
    sd_lower: float


BEYOND_UCL = "beyond_ucl"
ZONE_A_UPPER = "zone_a_upper"
ZONE_B_UPPER = "zone_b_upper"
ZONE_C_UPPER = "zone_c_upper"
ZONE_C_LOWER = "zone_c_lower"
ZONE_B_LOWER = "zone_b_lower"
ZONE_A_LOWER = "zone_a_lower"
BEYOND_LCL = "beyond_lcl"

ZONES = (
    BEYOND_UCL, ZONE_A_UPPER, ZONE_B_UPPER, ZONE_C_UPPER,
    ZONE_C_LOWER, ZONE_B_LOWER, ZONE_A_LOWER, BEYOND_LCL,
)


def classify(
    x: float, center: float, ucl: float, lcl: float, sd_upper: float, sd_lower: float
) -> str:
    """Return the zone of value ``x`` on a chart with these limits and sigma lines."""
    if x > ucl:
        return BEYOND_UCL
    if x < lcl:
        return BEYOND_LCL
    d = x - center
    if d >= 0.0:
        if d > 2.0 * sd_upper:
            return ZONE_A_UPPER
        return ZONE_B_UPPER if d > sd_upper else ZONE_C_UPPER
    d = -d
    if d > 2.0 * sd_lower:
        return ZONE_A_LOWER
    return ZONE_B_LOWER if d > sd_lower else ZONE_C_LOWER
