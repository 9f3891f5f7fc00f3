"""Charts with memory: the tabular CUSUM and the EWMA, each a carried state and one step per point.

Both plot a statistic that remembers earlier points, so they catch a shift of 0.5 to 1 sigma
several times sooner than a Shewhart chart; the Nelson run rules do not apply to them (their
points are autocorrelated), each has its own two signals instead (upper and lower side), raised
where the condition starts to hold, as the run rules are (bridge/spc/rules.py).

``x`` is the plotted value (the observation, or the subgroup mean) and ``sd`` its standard
deviation at the point's n (sigma/sqrt(n)), ``center`` the target mu0.

* CUSUM (Montgomery, Introduction to SQC, 9.1.2): C+_i = max(0, x_i - (mu0 + K) + C+_{i-1}),
  C-_i = max(0, (mu0 - K) - x_i + C-_{i-1}), K = k sd, H = h sd, a signal when a sum exceeds H.
  By default the sums keep accumulating after a signal, as Montgomery's table does;
  ``reset_after_signal`` restarts the side that signalled at the next point (at 0, or at the head
  start). ``fir`` (Lucas and Crosier's fast initial response) starts both sums, and every restart,
  at H/2. Limits: centre 0, UCL H, LCL -H (a dashboard plots C+ up and -C- down); the 1-sigma
  lines are ``sd`` apart, so ``k`` and ``h`` read off the limits.
* EWMA (NIST/SEMATECH e-Handbook 6.3.2.4; qcc's ewma): z_i = lambda x_i + (1 - lambda) z_{i-1},
  z_0 = mu0; point i has the exact limits mu0 +/- L sd sqrt(lambda/(2-lambda) [1-(1-lambda)^(2i)])
  and 1-sigma lines at that width / L; the chart's limits are the asymptotic ones (i -> infinity).

With subgroups of varying n, ``sd`` (so K, H and the EWMA width) follows each point's n, an
approximation: the exact EWMA variance for unequal n weighs every earlier n.
"""

from math import isfinite, sqrt
from typing import NamedTuple, Protocol

from bridge.spc.rules import CRITICAL
from bridge.spc.zones import Limits

# Rule ids of the memory charts' signals: outside Nelson's 1..8, one per side (docs/design.md, "CUSUM and EWMA").
CUSUM_UPPER, CUSUM_LOWER = 101, 102
EWMA_UPPER, EWMA_LOWER = 201, 202
SEVERITY = CRITICAL
_UPPER, _LOWER = 1, 2  # bits of the mask of sides beyond their limit


class MemoryPoint(NamedTuple):
    """One point of a memory chart: its limits, the value its zone is read from, its signals."""

    limits: Limits
    plotted: float                # C+ (or -C- when larger), or z
    beyond: int                   # sides beyond their limit: bit 0 upper, bit 1 lower
    fired: tuple[int, ...]        # rule ids raised at this point (a side that starts to hold)
    cusum_upper: float | None
    cusum_lower: float | None
    ewma: float | None


class Memory(Protocol):
    """A chart type's memory: its carried state (a JSON-able list) and its step."""

    statistic: str
    rule_names: dict[int, str]

    def limits(self, center: float, sd: float) -> Limits:
        """The chart's limits (asymptotic for the EWMA) for plotted sd ``sd``."""

    def start(self, center: float, sd: float) -> list[float]:
        """The carried state before the first point."""

    def step(self, carry: list[float], x: float, center: float, sd: float) -> MemoryPoint:
        """Add point ``x``: update ``carry`` in place and return the point's verdict."""


def _fired(beyond: int, holding: float, upper: int, lower: int) -> tuple[int, ...]:
    rising = beyond & ~int(holding)
    if not rising:
        return ()
    return tuple(rule for bit, rule in ((_UPPER, upper), (_LOWER, lower)) if rising & bit)


def _number(name: str, value: float, low: float, high: float, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not isfinite(value) or (
            value <= low if low_open else value < low) or value > high:
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high < 1e300 else "")
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


class Cusum:
    """The tabular CUSUM with allowance ``k`` and decision interval ``h`` (sigma units)."""

    __slots__ = ("k", "h", "reset", "fir")
    statistic = "cusum"
    rule_names = {CUSUM_UPPER: "CUSUM upper", CUSUM_LOWER: "CUSUM lower"}

    def __init__(self, k: float, h: float, reset_after_signal: bool, fir: bool) -> None:
        self.k = _number("k", k, 0.0, 1e6, False)
        self.h = _number("h", h, 0.0, 1e6, True)
        self.reset = _flag("reset_after_signal", reset_after_signal)
        self.fir = _flag("fir", fir)

    def limits(self, center: float, sd: float) -> Limits:
        """Centre 0, UCL H, LCL -H; 1-sigma lines at ``sd``."""
        limit = self.h * sd
        return Limits(0.0, limit, -limit, sd, sd)

    def start(self, center: float, sd: float) -> list[float]:
        """[C+, C-, sides holding], the sums at the head start (H/2 with FIR, else 0)."""
        head = self.h * sd / 2.0 if self.fir else 0.0
        return [head, head, 0]

    def step(self, carry: list[float], x: float, center: float, sd: float) -> MemoryPoint:
        """C+ and C- after ``x``; a side above H signals (once, as it starts to hold)."""
        allowance = self.k * sd
        limit = self.h * sd
        upper = max(0.0, x - (center + allowance) + carry[0])
        lower = max(0.0, (center - allowance) - x + carry[1])
        beyond = (upper > limit) | (lower > limit) << 1
        fired = _fired(beyond, carry[2], CUSUM_UPPER, CUSUM_LOWER)
        carry[0], carry[1], carry[2] = upper, lower, beyond
        if self.reset and beyond:
            head = limit / 2.0 if self.fir else 0.0
            if beyond & _UPPER:
                carry[0] = head
            if beyond & _LOWER:
                carry[1] = head
            carry[2] = 0  # the sums restart below H: a new excursion is a new signal
        limits = Limits(0.0, limit, -limit, sd, sd)
        return MemoryPoint(limits, upper if upper >= lower else -lower, beyond, fired,
                           upper, lower, None)


class Ewma:
    """The EWMA with weight ``lambda_`` and limits ``L`` standard deviations of z wide."""

    __slots__ = ("lam", "L", "_keep", "_decay", "_width")
    statistic = "ewma"
    rule_names = {EWMA_UPPER: "EWMA above upper limit", EWMA_LOWER: "EWMA below lower limit"}

    def __init__(self, lambda_: float, L: float) -> None:
        self.lam = _number("lambda", lambda_, 0.0, 1.0, True)
        self.L = _number("L", L, 0.0, 1e6, True)
        self._keep = 1.0 - self.lam
        self._decay = self._keep * self._keep
        self._width = self.lam / (2.0 - self.lam)  # the asymptotic variance of z over sd^2

    def limits(self, center: float, sd: float) -> Limits:
        """The asymptotic limits mu0 +/- L sd sqrt(lambda/(2-lambda))."""
        sd_z = sd * sqrt(self._width)
        return Limits(center, center + self.L * sd_z, center - self.L * sd_z, sd_z, sd_z)

    def start(self, center: float, sd: float) -> list[float]:
        """[z, (1-lambda)^(2i), sides holding] before the first point: z_0 = mu0, i = 0."""
        return [center, 1.0, 0]

    def step(self, carry: list[float], x: float, center: float, sd: float) -> MemoryPoint:
        """z after ``x`` against this point's exact limits."""
        z = self.lam * x + self._keep * carry[0]
        decay = carry[1] * self._decay
        sd_z = sd * sqrt(self._width * (1.0 - decay))
        half = self.L * sd_z
        ucl, lcl = center + half, center - half
        beyond = (z > ucl) | (z < lcl) << 1
        fired = _fired(beyond, carry[2], EWMA_UPPER, EWMA_LOWER)
        carry[0], carry[1], carry[2] = z, decay, beyond
        return MemoryPoint(Limits(center, ucl, lcl, sd_z, sd_z), z, beyond, fired, None, None, z)
