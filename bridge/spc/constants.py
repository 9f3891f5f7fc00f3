"""Control-chart constants d2, d3 and c4 for subgroup sizes 2 to 25, and the engine's bounds."""

from math import exp, lgamma, sqrt

MAX_SUBGROUP = 25
# The largest magnitude of a measurement or a fixed chart value the bridge takes: its square times
# any realistic count of samples stays far inside the range of floats, so no sum of squares,
# sigma or limit overflows. (The engine takes any finite value and refuses a baseline whose
# limits overflow; the bridge refuses larger measurements at ingest.)
MAX_MAGNITUDE = 1e100

# E[R]/sigma as printed in the published tables (3 decimals). Published limits (qcc, NIST,
# Montgomery) are computed with these rounded values, so exact integrals would miss them
# in the 4th decimal. Source: qcc R/utilities.R .qcc.options$exp.R.unscaled, identical to
# Montgomery Appendix VI for n = 2..10 (see shared/reference/constants.json).
_D2 = (
    1.128, 1.693, 2.059, 2.326, 2.534, 2.704, 2.847, 2.970, 3.078, 3.173, 3.258, 3.336,
    3.407, 3.472, 3.532, 3.588, 3.640, 3.689, 3.735, 3.778, 3.819, 3.858, 3.895, 3.931,
)
# SD[R]/sigma to 7 decimals, as qcc uses them (.qcc.options$se.R.unscaled).
_D3 = (
    0.8525033, 0.8883697, 0.8798108, 0.8640855, 0.8480442, 0.8332108, 0.8198378,
    0.8078413, 0.7970584, 0.7873230, 0.7784873, 0.7704257, 0.7630330, 0.7562217,
    0.7499188, 0.7440627, 0.7386021, 0.7334929, 0.7286980, 0.7241851, 0.7199267,
    0.7158987, 0.7120802, 0.7084528,
)


def _check(n: int) -> None:
    if not 2 <= n <= MAX_SUBGROUP:
        raise ValueError(f"subgroup size must be 2..{MAX_SUBGROUP}, got {n}")


def d2(n: int) -> float:
    """Expected relative range E[R]/sigma of a normal subgroup of size n."""
    _check(n)
    return _D2[n - 2]


def d3(n: int) -> float:
    """Standard deviation of the relative range SD[R]/sigma for subgroup size n."""
    _check(n)
    return _D3[n - 2]


def c4(n: int) -> float:
    """Bias factor E[s]/sigma of the sample standard deviation, exact (any n >= 2)."""
    if n < 2:
        raise ValueError(f"c4 needs n >= 2, got {n}")
    return sqrt(2.0 / (n - 1)) * exp(lgamma(n / 2) - lgamma((n - 1) / 2))
