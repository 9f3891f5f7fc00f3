"""What the engine needs to know about one characteristic's chart (no I/O, no wire formats)."""

from dataclasses import dataclass, field
from math import isfinite

from bridge.spc.charts import CHART_TYPES, ChartType
from bridge.spc.constants import MAX_MAGNITUDE, MAX_SUBGROUP
from bridge.spc.memory import Memory
from bridge.spc.rules import PRESETS, RuleSpec

DEFAULT_BASELINE = 25
_OPTIONS = ("k", "h", "reset_after_signal", "fir", "lambda_", "L")  # of the charts with memory


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """A characteristic's chart: type, subgroup size, where limits come from, rules, specs.

    ``center``, ``ucl`` and ``lcl`` are fixed values of the plotted statistic at the nominal
    subgroup size; ``sigma`` is the process (per-unit) standard deviation, as qcc's std.dev.
    Any of them left out is estimated from the first ``baseline`` samples; when none is
    needed, the chart monitors from the first sample.

    ``k``, ``h``, ``reset_after_signal``, ``fir`` (cusum) and ``lambda_``, ``L`` (ewma) are the
    options of the charts with memory (bridge/spc/memory.py); left out, they take the chart's
    defaults, and on other charts they are refused. The Nelson rules do not apply to those charts:
    their ``rules`` and ``dispersion_rules`` become empty (other than the defaults, refused).
    """

    chart: str = "imr"
    subgroup_size: int = 1
    baseline: int = DEFAULT_BASELINE
    center: float | None = None
    ucl: float | None = None
    lcl: float | None = None
    sigma: float | None = None
    sigma_method: str | None = None
    rules: tuple[RuleSpec, ...] = PRESETS["nelson"]
    dispersion_rules: tuple[RuleSpec, ...] = PRESETS["rule1"]
    usl: float | None = None
    lsl: float | None = None
    k: float | None = None
    h: float | None = None
    reset_after_signal: bool | None = None
    fir: bool | None = None
    lambda_: float | None = None
    L: float | None = None
    type: ChartType = field(init=False, repr=False, compare=False)
    memory: Memory | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            kind = CHART_TYPES[self.chart]
        except KeyError:
            raise ValueError(
                f"unknown chart {self.chart!r}: choose one of {', '.join(CHART_TYPES)}"
            ) from None
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "memory", self._memory(kind))
        n = self.subgroup_size
        if kind.name == "imr" and n != 1:
            raise ValueError("an imr chart has subgroup_size 1; use xbar_r or xbar_s for subgroups")
        if kind.dispersion in ("r", "s") and not 2 <= n <= MAX_SUBGROUP:
            raise ValueError(f"subgroup_size of an {kind.name} chart must be 2..{MAX_SUBGROUP}")
        if kind.attribute and n < 1:
            raise ValueError("subgroup_size (the nominal sample size) must be at least 1")
        if self.baseline < 2:
            raise ValueError("baseline must be at least 2 samples")
        if self.memory is not None and not 1 <= n <= MAX_SUBGROUP:
            raise ValueError(f"subgroup_size of a {kind.name} chart must be 1..{MAX_SUBGROUP}")
        methods = kind.sigma_methods_for(n)
        method = self.sigma_method or methods[0]
        if method not in methods:
            raise ValueError(
                f"sigma_method {method!r} does not apply to a {kind.name} chart "
                f"of subgroup_size {n}: choose one of {methods}"
            )
        object.__setattr__(self, "sigma_method", method)
        for name in ("center", "ucl", "lcl", "sigma", "usl", "lsl"):
            value = getattr(self, name)
            if value is not None and not (isfinite(value) and abs(value) <= MAX_MAGNITUDE):
                raise ValueError(f"{name} must be a finite number within ±{MAX_MAGNITUDE:g}")
        if self.sigma is not None and self.sigma <= 0:
            raise ValueError("sigma must be positive")
        c, u, lo = self.center, self.ucl, self.lcl
        if (u is not None or lo is not None) and c is None:
            raise ValueError("fixed ucl/lcl need a fixed center (limits may be asymmetric)")
        if c is not None and ((u is not None and u <= c) or (lo is not None and lo >= c)):
            raise ValueError("fixed limits must satisfy lcl < center < ucl")
        if self.usl is not None and self.lsl is not None and self.usl <= self.lsl:
            raise ValueError("usl must be above lsl")
        if kind.attribute and c is not None:
            # p is a fraction and np a count of n; a negative centre has no (Poisson) sigma
            top = {"p": 1.0, "np": float(n)}.get(kind.name, MAX_MAGNITUDE)
            if not 0.0 <= c <= top:
                raise ValueError(f"center of a {kind.name} chart must be in 0..{top:g}")
        if kind.attribute and (self.usl is not None or self.lsl is not None):
            raise ValueError("spec limits (usl/lsl) apply to measurement charts only")
        for rule in (*self.rules, *self.dispersion_rules):
            rule.validate()

    def _memory(self, kind: ChartType) -> Memory | None:
        """The chart's memory from the options given and its defaults; refuse foreign options."""
        defaults = dict(kind.options)
        for name in _OPTIONS:
            if getattr(self, name) is not None and name not in defaults:
                users = ", ".join(t.name for t in CHART_TYPES.values() if name in dict(t.options))
                raise ValueError(f"{name.rstrip('_')} applies to {users} charts only, not to {kind.name}")
        if kind.memory is None:
            return None
        values = {name: default if getattr(self, name) is None else getattr(self, name)
                  for name, default in defaults.items()}
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if self.ucl is not None or self.lcl is not None:
            options = ", ".join(name.rstrip("_") for name in defaults)
            raise ValueError(f"fixed ucl/lcl do not apply to a {kind.name} chart: its limits come "
                             f"from sigma and its options ({options})")
        for name, default in (("rules", PRESETS["nelson"]), ("dispersion_rules", PRESETS["rule1"])):
            if getattr(self, name) not in ((), default):
                raise ValueError(f"the Nelson rules do not apply to a {kind.name} chart (its points "
                                 f"are autocorrelated): leave out {name}")
            object.__setattr__(self, name, ())
        return kind.make_memory(values)

    @property
    def needs_baseline(self) -> bool:
        """True when some parameter must be estimated from phase-I samples."""
        if self.center is None:
            return True
        if self.type.attribute or self.sigma is not None:
            return False
        return self.ucl is None or self.lcl is None
