"""Chart types as a registry: each is its statistic, centre, sigma estimate and scaling with n.

As in R's qcc, a chart is data plus a type, and a type is a few small functions found by name,
so adding a chart type touches only ``CHART_TYPES``. Charts with memory (CUSUM, EWMA) add a
``memory`` (bridge/spc/memory.py) made from their ``options``. Every chart has a per-unit centre and
sigma; the plotted statistic of a sample of size n has centre ``center * center_factor(n)`` and
standard deviation ``sigma * sigma_factor(n)``.

Conventions (shared/reference/README.md): published table constants (d2 to 3 decimals); the
centre of subgrouped and attribute charts is the size-weighted mean (x-double-bar over all
measurements, p-bar = sum(D)/sum(n), u-bar = sum(c)/sum(n)); sigma from subgroups is the
unweighted mean of R_i/d2(n_i) or s_i/c4(n_i) (qcc "UWAVE"); dispersion charts use the
Montgomery/qcc form centre +/- 3 d3 sigma (not D3/D4 from a 3-decimal table), their centre for a
subgroup of n being d2(n) sigma (or c4(n) sigma), which equals R-bar (s-bar) when all n are equal.
"""

from dataclasses import dataclass
from math import sqrt
from typing import Any, Callable, NamedTuple, Sequence

from bridge.spc.constants import c4, d2, d3
from bridge.spc.memory import Cusum, Ewma, Memory


class Point(NamedTuple):
    """The statistics of one sample: what its chart plots and what a baseline needs."""

    value: float        # the plotted statistic: x, subgroup mean, p, np, c or u
    n: int              # measurements in the subgroup, or the attribute sample size
    total: float        # sum of the measurements, or the count
    m2: float           # sum of squared deviations from the subgroup mean (0 for attributes)
    range: float | None  # subgroup range, or moving range for individuals; None if undefined


class SampleError(ValueError):
    """A sample that cannot be charted: the message says why."""


def std_dev(p: Point) -> float | None:
    """Sample standard deviation of a subgroup (None below two measurements)."""
    return sqrt(p.m2 / (p.n - 1)) if p.n >= 2 else None


def _estimate_mr(points: Sequence[Point]) -> float | None:
    # The moving range spans any excluded point (qcc: viscosity[-4, ]), as published.
    if len(points) < 2:
        return None
    mrs = [abs(b.value - a.value) for a, b in zip(points, points[1:])]
    return sum(mrs) / len(mrs) / d2(2)


def _estimate_sd(points: Sequence[Point]) -> float | None:
    count = sum(p.n for p in points)
    if count < 2:
        return None
    mean = sum(p.total for p in points) / count
    ss = sum(p.m2 + p.n * (p.value - mean) * (p.value - mean) for p in points)
    return sqrt(ss / (count - 1)) / c4(count)


def _estimate_r(points: Sequence[Point]) -> float | None:
    ratios = [p.range / d2(p.n) for p in points if p.n >= 2 and p.range is not None]
    return sum(ratios) / len(ratios) if ratios else None


def _estimate_s(points: Sequence[Point]) -> float | None:
    ratios = [sqrt(p.m2 / (p.n - 1)) / c4(p.n) for p in points if p.n >= 2]
    return sum(ratios) / len(ratios) if ratios else None


# sigma estimators by name: baseline points -> per-unit sigma (None: not estimable yet)
SIGMA_ESTIMATORS: dict[str, Callable[[Sequence[Point]], float | None]] = {
    "mr": _estimate_mr,
    "sd": _estimate_sd,
    "r": _estimate_r,
    "s": _estimate_s,
}


class SpreadLimits(NamedTuple):
    """Centre and standard deviation of a dispersion statistic for subgroup size n."""

    center: float
    sd: float


def _mr_limits(sigma: float, n: int) -> SpreadLimits:
    return SpreadLimits(d2(2) * sigma, d3(2) * sigma)


def _r_limits(sigma: float, n: int) -> SpreadLimits:
    return SpreadLimits(d2(n) * sigma, d3(n) * sigma)


def _s_limits(sigma: float, n: int) -> SpreadLimits:
    c = c4(n)
    return SpreadLimits(c * sigma, sigma * sqrt(1.0 - c * c))


def _range(p: Point) -> float | None:
    return p.range


# dispersion chart id -> (its statistic of a point, its centre and sd for sigma and n)
DISPERSION: dict[str, tuple[Callable[[Point], float | None], Callable[[float, int], SpreadLimits]]] = {
    "mr": (_range, _mr_limits),
    "r": (_range, _r_limits),
    "s": (std_dev, _s_limits),
}


def _one(n: int) -> float:
    return 1.0


def _inv_sqrt(n: int) -> float:
    return 1.0 / sqrt(n)


def _identity(n: int) -> float:
    return float(n)


def _binomial_sigma(p: float) -> float:
    return sqrt(p * (1.0 - p))


def _ratio(count: float, n: int) -> float:
    return count / n


def _count(count: float, n: int) -> float:
    return float(count)


@dataclass(frozen=True, slots=True)
class ChartType:
    """One kind of control chart: the functions that make its statistic and limits."""

    name: str                      # configuration name, e.g. "xbar_r"
    primary: str                   # chart id of the plotted statistic, e.g. "xbar"
    dispersion: str | None         # chart id of the dispersion chart ("mr", "r", "s")
    sigma_methods: tuple[str, ...]  # estimators allowed; the first is the default
    center_factor: Callable[[int], float]
    sigma_factor: Callable[[int], float]
    nonnegative: bool              # the statistic cannot be negative: clamp the LCL at 0
    # attribute charts only: the plotted statistic of a count, and sigma from the centre
    statistic: Callable[[float, int], float] | None = None
    sigma_from_center: Callable[[float], float] | None = None
    # charts with memory only: their option keys with defaults, and the memory they make
    options: tuple[tuple[str, float | bool], ...] = ()
    memory: Callable[..., Memory] | None = None
    # charts of individuals or subgroups alike: the estimators allowed when subgroup_size > 1
    subgroup_sigma_methods: tuple[str, ...] | None = None

    @property
    def attribute(self) -> bool:
        """True for charts of counts (p, np, c, u)."""
        return self.statistic is not None

    def sigma_methods_for(self, n: int) -> tuple[str, ...]:
        """The sigma estimators allowed at nominal subgroup size n; the first is the default."""
        if n > 1 and self.subgroup_sigma_methods is not None:
            return self.subgroup_sigma_methods
        return self.sigma_methods

    def make_memory(self, options: dict[str, Any]) -> Memory | None:
        """The chart's memory for these option values (ValueError if one is out of range)."""
        return self.memory(**options) if self.memory is not None else None

    def point_from_values(self, values: Sequence[float]) -> Point:
        """Statistics of a subgroup of measurements (the moving range is the evaluator's)."""
        n = len(values)
        if n == 1:
            v = float(values[0])
            return Point(v, 1, v, 0.0, None)
        # floats, and squares by multiplication: a huge value gives inf, never OverflowError
        floats = [float(v) for v in values]
        total = sum(floats)
        mean = total / n
        m2 = sum((v - mean) * (v - mean) for v in floats)
        return Point(mean, n, total, m2, max(floats) - min(floats))

    def point_from_count(self, count: float, n: int) -> Point:
        """Statistics of an attribute sample: ``count`` defects or defectives among ``n``."""
        assert self.statistic is not None
        return Point(self.statistic(count, n), n, float(count), 0.0, None)


CHART_TYPES: dict[str, ChartType] = {
    t.name: t
    for t in (
        ChartType("imr", "i", "mr", ("mr", "sd"), _one, _one, False),
        ChartType("xbar_r", "xbar", "r", ("r", "s"), _one, _inv_sqrt, False),
        ChartType("xbar_s", "xbar", "s", ("s", "r"), _one, _inv_sqrt, False),
        ChartType("p", "p", None, ("binomial",), _one, _inv_sqrt, True, _ratio, _binomial_sigma),
        ChartType("np", "np", None, ("binomial",), _identity, sqrt, True, _count, _binomial_sigma),
        ChartType("c", "c", None, ("poisson",), _one, _one, True, _count, sqrt),
        ChartType("u", "u", None, ("poisson",), _one, _inv_sqrt, True, _ratio, sqrt),
        ChartType("cusum", "cusum", None, ("mr", "sd"), _one, _inv_sqrt, False,
                  options=(("k", 0.5), ("h", 5.0), ("reset_after_signal", False), ("fir", False)),
                  memory=Cusum, subgroup_sigma_methods=("r", "s")),
        ChartType("ewma", "ewma", None, ("mr", "sd"), _one, _inv_sqrt, False,
                  options=(("lambda_", 0.2), ("L", 3.0)), memory=Ewma,
                  subgroup_sigma_methods=("r", "s")),
    )
}
