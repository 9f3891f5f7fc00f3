"""One characteristic's chart as a stream: samples go in one at a time, evaluations come out.

Phase I (baseline): the first ``baseline`` samples are collected without zones; when the last
arrives, the limits are computed from them and every baseline sample is evaluated against them
in order (so the result is what evaluating the whole series at once gives), then monitoring
(phase II) goes on with those limits fixed until ``recalculate`` or ``start_baseline``. If the
baseline cannot give a sigma yet (e.g. subgroups of one), it is extended until it can.
A baseline whose limits are not finite numbers (measurements so large that their sums or squares
overflow, e.g. 1e308 and -1e308) gives no limits: the chart stays in its baseline, starts a new one
from the next sample and says why in ``baseline_error`` until a baseline gives usable limits.

A chart with memory (CUSUM, EWMA: ``spec.memory``) runs no rule trackers: each point steps its
carried state (the sums, or z) against the point's limits, and that state starts afresh whenever
the limits are set (at the end of a baseline, whose samples are then stepped in order, as qcc
does, or on ``recalculate``). It is part of the saved state, so a restart continues it exactly.

The state is a small JSON-serialisable dict (``state()`` / ``Evaluator(spec, state)``): the
baseline points (at most ``baseline`` of them), the parameters, the rule trackers' bit masks
and running moments (and a memory chart's carried state), so one evaluation costs the same
whatever the length of the history.
"""

from dataclasses import dataclass
from math import isfinite, sqrt
from sys import float_info
from typing import Any, Iterable, NamedTuple, Sequence

from bridge.spc.capability import Capability, capability
from bridge.spc.charts import DISPERSION, SIGMA_ESTIMATORS, Point, SampleError
from bridge.spc.memory import SEVERITY
from bridge.spc.rules import RuleTracker
from bridge.spc.spec import ChartSpec
from bridge.spc.zones import Limits, classify

BASELINE = "baseline"
MONITORING = "monitoring"
_STATE_VERSION = 1
_NONE: frozenset[int] = frozenset()  # no sample excluded (an empty frozenset is not shared)
# The largest multiple of a per-unit sigma that any limit adds to its centre: 3 on the primary
# chart at n = 1, d2(n) + 3 d3(n) < 7 on an R chart; limits stay finite if |centre| + this
# many sigma is finite.
_SIGMA_HEADROOM = 10.0
_FLOAT_MAX = float_info.max


class Params(NamedTuple):
    """The established chart parameters, per unit (n = 1) of the plotted statistic."""

    center: float
    sigma_upper: float
    sigma_lower: float
    sigma: float  # process sigma: dispersion charts and capability


class Violation(NamedTuple):
    """A rule that fired at a sample, on one chart (``i``, ``mr``, ``xbar``, ``r``, ...)."""

    sample_index: int
    rule_id: int
    rule_name: str
    severity: str
    chart: str


@dataclass(slots=True)
class Evaluation:
    """The verdict on one sample (``zone`` and ``in_control`` are None during the baseline).

    On a memory chart ``limits`` are the point's own (the EWMA's exact ones) and the carried
    statistics are set: ``cusum_upper`` and ``cusum_lower``, or ``ewma``.
    """

    index: int
    value: float
    n: int
    spread: float | None
    zone: str | None
    in_control: bool | None
    limits: Limits | None
    violations: list[Violation]
    cusum_upper: float | None = None
    cusum_lower: float | None = None
    ewma: float | None = None


class _Moments:
    """Running count, mean and sum of squared deviations of all measurements (Chan/Welford)."""

    __slots__ = ("count", "mean", "m2")

    def __init__(self, count: float = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count, self.mean, self.m2 = int(count), float(mean), float(m2)

    def add(self, p: Point) -> None:
        n = self.count + p.n
        delta = p.value - self.mean
        self.mean += delta * p.n / n
        self.m2 += p.m2 + delta * delta * self.count * p.n / n
        self.count = n


class Evaluator:
    """Streaming control chart of one characteristic (see the module docstring)."""

    # A bridge holds one per characteristic, ten thousand of them: slots, no per-instance tables.
    __slots__ = (
        "spec", "_type", "_estimate", "_dispersion", "_primary", "_spread", "_nominal", "_cache",
        "count",
        "limits_version", "baseline_start", "baseline", "excluded", "params", "_last", "_moments",
        "baseline_error", "_memory", "_carry",
    )

    def __init__(self, spec: ChartSpec, state: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self._type = spec.type
        self._estimate = SIGMA_ESTIMATORS.get(spec.sigma_method or "")
        self._dispersion = DISPERSION.get(self._type.dispersion or "")
        self._primary = RuleTracker(spec.rules)
        self._spread = RuleTracker(spec.dispersion_rules)
        self._nominal: tuple[Limits, Limits | None] | None = None  # limits at the nominal n
        self._cache: dict[int, tuple[Limits, Limits | None]] | None = None  # at other sizes
        self.count = 0
        self.limits_version = 0
        self.baseline_start = 0
        self.baseline: list[Point] = []
        self.excluded = _NONE
        self.params: Params | None = None
        self._last: float | None = None
        self._moments = _Moments()
        self.baseline_error: str | None = None  # why the last baseline gave no limits
        self._memory = spec.memory
        self._carry: list[float] | None = None  # the memory chart's state while limits are set
        if state is not None:
            self._restore(state)
        elif not spec.needs_baseline:
            self._set_params(self._params_from(()))

    # ----------------------------------------------------------------- inputs
    def check_values(self, values: Sequence[float]) -> None:
        """Raise SampleError unless ``values`` can be added as one subgroup."""
        if self._type.attribute:
            raise SampleError(f"a {self._type.name} chart takes counts, not measurements")
        nominal = self.spec.subgroup_size
        if not values:
            raise SampleError("a sample needs at least one measurement")
        if len(values) > nominal:
            raise SampleError(f"subgroup of {len(values)} values exceeds subgroup_size {nominal}")
        for v in values:
            if not _is_finite(v):
                raise SampleError(f"measurement {v!r:.40} is not a finite number")

    def add_values(self, values: Sequence[float]) -> list[Evaluation]:
        """Add one subgroup of measurements (one value for an individuals chart)."""
        self.check_values(values)
        point = self._type.point_from_values(values)
        if self._type.dispersion == "mr":
            last, self._last = self._last, point.value
            if last is not None:
                point = Point(point.value, 1, point.total, 0.0, abs(point.value - last))
        return self._add(point)

    def check_count(self, count: float, n: int | None) -> int:
        """The sample size to chart ``count`` with; SampleError if the pair is unusable."""
        name = self._type.name
        if not self._type.attribute:
            raise SampleError(f"a {name} chart takes measurements, not counts")
        if not _is_finite(count):
            raise SampleError(f"count {count!r:.40} is not a finite number")
        if count < 0 or count != int(count):
            raise SampleError(f"count {count!r:.40} must be a whole number >= 0")
        if name == "c":
            if n is not None and n != self.spec.subgroup_size:
                raise SampleError("a c chart has a constant area of opportunity; use a u chart")
            return 1
        if n is None:
            n = self.spec.subgroup_size
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _FLOAT_MAX:
            raise SampleError(f"sample size n={n!r} must be a whole number >= 1")
        if name in ("p", "np") and count > n:
            raise SampleError(f"count {float(count):g} exceeds the sample size n={n}")
        return n

    def add_count(self, count: float, n: int | None = None) -> list[Evaluation]:
        """Add one attribute sample: ``count`` defectives (p, np) or defects (c, u) in ``n``."""
        size = self.check_count(count, n)
        return self._add(self._type.point_from_count(count, size))

    # ------------------------------------------------------------- evaluation
    def _add(self, point: Point) -> list[Evaluation]:
        index = self.count
        self.count += 1
        if self._type.statistic is None:
            self._moments.add(point)
        if self.params is not None:
            return [self._evaluate(index, point)]
        self.baseline.append(point)
        if len(self.baseline) >= self.spec.baseline and self._establish():
            return [self._evaluate(self.baseline_start + i, p) for i, p in enumerate(self.baseline)]
        return [Evaluation(index, point.value, point.n, self._spread_of(point),
                           None, None, None, [])]

    def _spread_of(self, point: Point) -> float | None:
        return self._dispersion[0](point) if self._dispersion else None

    def _evaluate(self, index: int, point: Point) -> Evaluation:
        if self._memory is not None:
            return self._step_memory(index, point)
        limits, spread_limits = self._limits_at(point.n)
        x = point.value
        holding, fired = self._primary.step(x, *limits)
        violations = [self._violation(index, self._type.primary, r) for r in fired]
        spread = self._spread_of(point)
        if spread is not None and spread_limits is not None:
            spread_holding, fired = self._spread.step(spread, *spread_limits)
            holding |= spread_holding
            violations += [self._violation(index, self._type.dispersion or "", r) for r in fired]
        return Evaluation(index, x, point.n, spread, classify(x, *limits), not holding,
                          limits, violations)

    def _step_memory(self, index: int, point: Point) -> Evaluation:
        memory, p, carry = self._memory, self.params, self._carry
        assert memory is not None and p is not None and carry is not None
        sd = p.sigma * self._type.sigma_factor(point.n)
        step = memory.step(carry, point.value, p.center, sd)
        chart = self._type.primary
        violations = [Violation(index, rule, memory.rule_names[rule], SEVERITY, chart)
                      for rule in step.fired]
        return Evaluation(index, point.value, point.n, None, classify(step.plotted, *step.limits),
                          not step.beyond, step.limits, violations,
                          step.cusum_upper, step.cusum_lower, step.ewma)

    def _violation(self, index: int, chart: str, rule_id: int) -> Violation:
        rules = self.spec.rules if chart == self._type.primary else self.spec.dispersion_rules
        rule = next(r for r in rules if r.id == rule_id)
        return Violation(index, rule_id, rule.name, rule.severity, chart)

    # ----------------------------------------------------------------- limits
    def limits(self, n: int | None = None) -> tuple[Limits, Limits | None] | None:
        """Primary and dispersion limits for subgroup size n (nominal by default)."""
        if self.params is None:
            return None
        return self._limits_at(self.spec.subgroup_size if n is None else n)

    def _limits_at(self, n: int) -> tuple[Limits, Limits | None]:
        if n == self.spec.subgroup_size:
            if self._nominal is None:
                self._nominal = (self._primary_limits(n), self._spread_limits(n))
            return self._nominal
        if self._cache is None:
            self._cache = {}
        cached = self._cache.get(n)
        if cached is None:
            cached = self._cache[n] = (self._primary_limits(n), self._spread_limits(n))
        return cached

    def _primary_limits(self, n: int) -> Limits:
        spec, kind, p = self.spec, self._type, self.params
        assert p is not None
        cf, sf = kind.center_factor(n), kind.sigma_factor(n)
        if self._memory is not None:
            return self._memory.limits(p.center, p.sigma * sf)
        nominal = n == spec.subgroup_size
        center = spec.center if nominal and spec.center is not None else p.center * cf
        sd_up, sd_lo = p.sigma_upper * sf, p.sigma_lower * sf
        ucl = spec.ucl if nominal and spec.ucl is not None else center + 3.0 * sd_up
        lcl = spec.lcl if nominal and spec.lcl is not None else center - 3.0 * sd_lo
        if kind.nonnegative and lcl < 0.0:
            lcl = 0.0
        return Limits(center, ucl, lcl, sd_up, sd_lo)

    def _spread_limits(self, n: int) -> Limits | None:
        if self._dispersion is None or (self._type.dispersion != "mr" and n < 2):
            return None
        assert self.params is not None
        center, sd = self._dispersion[1](self.params.sigma, n)
        return Limits(center, center + 3.0 * sd, max(0.0, center - 3.0 * sd), sd, sd)

    def _params_from(self, points: Sequence[Point]) -> Params | None:
        """Parameters from the fixed values of the spec, the rest estimated from ``points``."""
        spec, kind = self.spec, self._type
        nominal = spec.subgroup_size
        if spec.center is not None:
            center = spec.center / kind.center_factor(nominal)
        elif points:
            center = sum(p.total for p in points) / sum(p.n for p in points)
        else:
            return None
        sigma = spec.sigma
        if sigma is None and kind.sigma_from_center is not None:
            sigma = kind.sigma_from_center(center)
        scale = 3.0 * kind.sigma_factor(nominal)
        upper = (spec.ucl - spec.center) / scale if spec.ucl is not None and spec.center is not None else None
        lower = (spec.center - spec.lcl) / scale if spec.lcl is not None and spec.center is not None else None
        if sigma is None and upper is not None and lower is not None:
            sigma = (upper + lower) / 2.0
        if sigma is None and self._estimate is not None:
            sigma = self._estimate(points)
        if sigma is None:
            return None
        return Params(center, sigma if upper is None else upper,
                      sigma if lower is None else lower, sigma)

    def _set_params(self, params: Params | None) -> bool:
        if params is None:
            return False
        self.params = params
        self.baseline_error = None
        self._nominal = self._cache = None
        self._carry = self._start_memory()
        self._primary.reset()
        self._spread.reset()
        self.limits_version += 1
        return True

    def _start_memory(self) -> list[float] | None:
        """A memory chart's state before its first point under the current limits."""
        if self._memory is None or self.params is None:
            return None
        sd = self.params.sigma * self._type.sigma_factor(self.spec.subgroup_size)
        return self._memory.start(self.params.center, sd)

    def _params_without(self, excluded: frozenset[int]) -> Params | None:
        return self._params_from([p for i, p in enumerate(self.baseline, self.baseline_start)
                                  if i not in excluded])

    def _establish(self) -> bool:
        """Set the limits from the baseline: False while it cannot give them, or when they are
        not finite (then a new baseline starts and ``baseline_error`` says why)."""
        params = self._params_without(self.excluded)
        if params is None:
            return False
        if not _finite(params):
            stop = self.baseline_start + len(self.baseline) - 1
            peak = max((abs(p.value) for p in self.baseline), default=0.0)
            self._new_baseline(
                f"baseline samples {self.baseline_start}..{stop} give limits beyond the range of "
                f"numbers (values up to {peak:.3g}): check the gauge's scaling; a new baseline "
                f"starts at sample {self.count}")
            return False
        return self._set_params(params)

    # ------------------------------------------------------- operator actions
    def recalculate(self, exclude: Iterable[int] = ()) -> Params:
        """Recompute the limits from the baseline without the samples at ``exclude``."""
        if not self.spec.needs_baseline:
            raise ValueError("the limits are fixed in the configuration; there is no baseline")
        if self.params is None:
            raise ValueError("the baseline is not complete yet")
        excluded = frozenset(exclude)
        stop = self.baseline_start + len(self.baseline)
        outside = sorted(i for i in excluded if not self.baseline_start <= i < stop)
        if outside:
            raise ValueError(
                f"samples {outside} are not in the baseline "
                f"({self.baseline_start}..{stop - 1})"
            )
        params = self._params_without(excluded)
        if params is None:
            raise ValueError("too few baseline samples left to estimate the limits")
        if not _finite(params):
            raise ValueError("the remaining baseline samples give limits beyond the range of numbers")
        self.excluded = excluded
        self._set_params(params)
        self._moments = _Moments()
        for i, p in enumerate(self.baseline, self.baseline_start):
            if i not in excluded and self._type.statistic is None:
                self._moments.add(p)
        assert self.params is not None
        return self.params

    def reestablish(self) -> None:
        """Set the limits again after a change of the spec (fixed values, rules): from the fixed
        values and the current baseline without its excluded samples; a chart still in its
        baseline stays there. Raises ValueError, changing nothing, if they cannot be set."""
        if self.spec.needs_baseline and self.params is None:
            if len(self.baseline) >= self.spec.baseline:
                self._establish()
            self.limits_version += 1
            return
        params = self._params_from(()) if not self.spec.needs_baseline else self._params_without(self.excluded)
        if params is None:
            raise ValueError("the baseline cannot give the limits that are not fixed")
        if not _finite(params):
            raise ValueError("these limits are beyond the range of numbers")
        self._set_params(params)

    def start_baseline(self) -> None:
        """Start a new phase I: the next ``baseline`` samples set new limits."""
        if not self.spec.needs_baseline:
            raise ValueError("the limits are fixed in the configuration; there is no baseline")
        self._new_baseline(None)

    def _new_baseline(self, error: str | None) -> None:
        self.params = None
        self.baseline_error = error
        self.baseline = []
        self.excluded = _NONE
        self.baseline_start = self.count
        self._moments = _Moments()
        self._carry = None
        self.limits_version += 1

    @property
    def phase(self) -> str:
        """``baseline`` while phase-I samples are collected, else ``monitoring``."""
        return MONITORING if self.params is not None else BASELINE

    def capability(self) -> Capability | None:
        """Cp, Cpk, Pp, Ppk when spec limits exist and the limits are established."""
        spec, p, m = self.spec, self.params, self._moments
        if p is None or (spec.usl is None and spec.lsl is None) or m.count == 0:
            return None
        overall = sqrt(m.m2 / (m.count - 1)) if m.count > 1 else None
        return capability(spec.usl, spec.lsl, m.mean, p.sigma, overall)

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Everything needed to resume, as plain JSON-serialisable values."""
        m = self._moments
        return {
            "version": _STATE_VERSION,
            "count": self.count,
            "limits_version": self.limits_version,
            "baseline_start": self.baseline_start,
            "baseline": [list(p) for p in self.baseline],
            "excluded": sorted(self.excluded),
            "params": list(self.params) if self.params is not None else None,
            "last": self._last,
            "primary": self._primary.state(),
            "spread": self._spread.state(),
            "moments": [m.count, m.mean, m.m2],
            "baseline_error": self.baseline_error,
            "memory": self._carry,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported evaluator state version {state.get('version')!r}")
        self.count = int(state["count"])
        self.limits_version = int(state["limits_version"])
        self.baseline_start = int(state["baseline_start"])
        self.baseline = [Point(*p) for p in state["baseline"]]
        self.excluded = frozenset(state["excluded"])
        self._last = state["last"]
        self._moments = _Moments(*state["moments"])
        self.baseline_error = state.get("baseline_error")  # absent in states of earlier versions
        self._primary.restore(state["primary"])
        self._spread.restore(state["spread"])
        if not self.spec.needs_baseline:
            self.params = self._params_from(())  # the configuration wins over a stored state
        elif state["params"] is not None:
            params = Params(*state["params"])
            if _finite(params):
                self.params = params
            else:  # saved by a version that took any baseline: its limits were null
                self._new_baseline(
                    f"the stored limits are not finite numbers: check the gauge's scaling; a new "
                    f"baseline starts at sample {self.count}")
        carry = state.get("memory")  # absent in states of earlier versions (no memory charts)
        self._carry = self._start_memory() if carry is None or self.params is None else list(carry)


def _is_finite(value: object) -> bool:
    """True for an int or float within the range of floats (a huge int too, without converting it)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and -_FLOAT_MAX <= value <= _FLOAT_MAX)


def _finite(params: Params) -> bool:
    """True if every parameter and every limit derived from them is a finite number."""
    return (all(isfinite(v) for v in params) and isfinite(
        abs(params.center)
        + _SIGMA_HEADROOM * max(params.sigma_upper, params.sigma_lower, params.sigma)))
