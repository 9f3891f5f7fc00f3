"""Process capability (Cp, Cpk) and performance (Pp, Ppk) against spec limits USL/LSL.

Cp and Cpk use the within-subgroup sigma of the chart (R-bar/d2, s-bar/c4 or MR-bar/d2, as
AIAG and qcc do); Pp and Ppk use the overall sample standard deviation of every measurement.
With one spec limit only, Cp and Pp are undefined and Cpk/Ppk are the one-sided indices.
"""

from typing import NamedTuple


class Capability(NamedTuple):
    """Capability indices; None where a limit or a sigma is missing."""

    cp: float | None
    cpk: float | None
    pp: float | None
    ppk: float | None
    mean: float
    sigma_within: float
    sigma_overall: float | None


def _indices(
    usl: float | None, lsl: float | None, mean: float, sigma: float | None
) -> tuple[float | None, float | None]:
    if sigma is None or sigma <= 0.0:
        return None, None
    spread = (usl - lsl) / (6.0 * sigma) if usl is not None and lsl is not None else None
    sides = []
    if usl is not None:
        sides.append((usl - mean) / (3.0 * sigma))
    if lsl is not None:
        sides.append((mean - lsl) / (3.0 * sigma))
    return spread, min(sides) if sides else None


def capability(
    usl: float | None,
    lsl: float | None,
    mean: float,
    sigma_within: float,
    sigma_overall: float | None,
) -> Capability:
    """Cp, Cpk from ``sigma_within`` and Pp, Ppk from ``sigma_overall`` around ``mean``."""
    cp, cpk = _indices(usl, lsl, mean, sigma_within)
    pp, ppk = _indices(usl, lsl, mean, sigma_overall)
    return Capability(cp, cpk, pp, ppk, mean, sigma_within, sigma_overall)
