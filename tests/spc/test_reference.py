"""The SPC engine against every published value in the shared reference data sets (qcc vignettes, NIST).

The data and the published numbers are read straight from ``shared/reference/datasets/*.json``
(``shared`` is a sibling folder of the repository; if it is not there, the environment variable
``SPC_REFERENCE_DIR`` names the ``reference`` folder instead). A published number is matched to
within half a unit of its last printed digit (see ``tolerance``); which source printed it is in the
comment beside each group below and in every failure message.
"""

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest

from bridge.spc import Capability, ChartSpec, Evaluation, Evaluator, Limits
from bridge.spc.constants import c4, d2, d3


def _reference_dir() -> Path:
    """``shared/reference`` beside the repository, else the folder named by SPC_REFERENCE_DIR."""
    default = Path(__file__).resolve().parents[3] / "shared" / "reference"
    if (default / "datasets").is_dir():
        return default
    override = os.environ.get("SPC_REFERENCE_DIR")
    if override and (Path(override) / "datasets").is_dir():
        return Path(override)
    raise FileNotFoundError(
        f"reference data not found at {default}; set SPC_REFERENCE_DIR to the folder holding datasets/"
    )


REFERENCE = _reference_dir()
DATASETS = REFERENCE / "datasets"

PISTONRINGS = "pistonrings_xbar_R_S"
VARIABLE_N = "pistonrings_variable_n_xbar_R"
ORANGEJUICE = "orangejuice_p_np"
ORANGEJUICE2 = "orangejuice2_p_lcl_clamped"
CIRCUIT = "circuit_c_u"
PCMANUFACT = "pcmanufact_u"
VISCOSITY = "viscosity_imr"
VISCOSITY15 = "viscosity15_imr"
FLOWRATE = "nist_flowrate_imr"
CUSUM = "montgomery_cusum_9_1"
EWMA = "nist_ewma_6_3_2_4"

BEYOND = ("beyond_ucl", "beyond_lcl")


# ------------------------------------------------------------------------------------ helpers
@cache
def dataset(name: str) -> dict[str, Any]:
    """One reference data set, parsed from its JSON file."""
    with open(DATASETS / f"{name}.json", encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def lookup(node: Any, path: str) -> Any:
    """The node at a dotted path such as ``cases.0.expected.center``."""
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def tolerance(printed: str) -> float:
    """Half a unit of the last printed digit: "74.0143" -> 0.00005, "2.0" -> 0.05; "0" is exact."""
    text = printed.strip()
    if "." in text:
        return 0.5 * 10.0 ** -len(text.split(".", 1)[1])
    return 1e-12 if float(text) == 0.0 else 0.5


def assert_printed(actual: float | None, printed: str, what: str, tol: float | None = None) -> None:
    """``actual`` rounds to the printed number (to within half a unit of its last digit, or ``tol``)."""
    assert actual is not None, f"{what}: engine gave None, published {printed}"
    tol = tolerance(printed) if tol is None else tol
    assert abs(actual - float(printed)) <= tol, (
        f"{what}: engine {actual!r}, published {printed} (tolerance {tol:g})"
    )


def source_label(name: str, entry: dict[str, Any]) -> str:
    """The label of the source that printed a published entry (its ``expected_value_sources``)."""
    sources = dataset(name).get("expected_value_sources") or {}
    key = entry.get("source", "")
    return str(sources.get(key, {}).get("label", key))


@dataclass
class Run:
    """An evaluator after a data set was fed, with the final verdict on every sample by 0-based index."""

    evaluator: Evaluator
    evaluations: dict[int, Evaluation] = field(default_factory=dict)

    def record(self, evaluations: Iterable[Evaluation]) -> None:
        """Keep the latest evaluation of each sample (a completed baseline re-evaluates its samples)."""
        for e in evaluations:
            self.evaluations[e.index] = e

    def primary(self, n: int | None = None) -> Limits:
        """Limits of the plotted statistic at subgroup size n (nominal by default)."""
        limits = self.evaluator.limits(n)
        assert limits is not None, "limits are not established"
        return limits[0]

    def dispersion(self, n: int | None = None) -> Limits:
        """Limits of the MR, R or S chart at subgroup size n (nominal by default)."""
        limits = self.evaluator.limits(n)
        assert limits is not None and limits[1] is not None, "no dispersion limits"
        return limits[1]

    @property
    def sigma(self) -> float:
        """The process (per-unit) sigma the limits were built from."""
        assert self.evaluator.params is not None
        return self.evaluator.params.sigma

    def beyond(self, samples: range) -> dict[int, str]:
        """1-based sample number -> zone, for the given 0-based samples that lie beyond a limit."""
        return {i + 1: e.zone for i, e in sorted(self.evaluations.items())
                if i in samples and e.zone in BEYOND}


def stream(spec: ChartSpec, samples: Sequence[Any], add: Callable[[Evaluator, Any], list[Evaluation]],
           exclude: Iterable[int] = ()) -> Run:
    """Feed every sample; right after the baseline completes, recalculate without ``exclude``."""
    run = Run(Evaluator(spec))
    excluded = set(exclude)
    for i, sample in enumerate(samples):
        run.record(add(run.evaluator, sample))
        if excluded and i == spec.baseline - 1:
            run.evaluator.recalculate(exclude=excluded)
    return run


def add_subgroup(ev: Evaluator, values: Sequence[float]) -> list[Evaluation]:
    """Add a subgroup of measurements."""
    return ev.add_values(values)


def add_individual(ev: Evaluator, value: float) -> list[Evaluation]:
    """Add one individual measurement."""
    return ev.add_values([value])


def add_count(ev: Evaluator, sample: tuple[int, int]) -> list[Evaluation]:
    """Add one attribute sample (count, sample size)."""
    return ev.add_count(*sample)


def excluded_from(case: dict[str, Any], stop: int) -> set[int]:
    """The baseline samples a revised case leaves out (those not in its ``phase1_zero_based``)."""
    return set(range(stop)) - set(case["phase1_zero_based"])


# -------------------------------------------------------------------- the charts of each data set
@cache
def pistonrings(chart: str) -> Run:
    """Piston rings, n = 5, limits from samples 1-25, then samples 26-40 as phase II."""
    data = dataset(PISTONRINGS)
    spec = ChartSpec(chart=chart, subgroup_size=5, baseline=data["phase1"]["zero_based"][1])
    return stream(spec, data["data"]["values"], add_subgroup)


@cache
def pistonrings_variable_n() -> Run:
    """Piston rings with 12 measurements removed (n = 3 to 5), x-bar/R from samples 1-25."""
    data = dataset(VARIABLE_N)
    spec = ChartSpec(chart="xbar_r", subgroup_size=5, baseline=data["phase1"]["zero_based"][1])
    return stream(spec, data["data"]["values"], add_subgroup)


@cache
def orangejuice(chart: str, revised: bool = False) -> Run:
    """Orange juice p or np chart from samples 1-30; revised: without 15 and 23, then 31-54."""
    data = dataset(ORANGEJUICE)
    baseline = data["cases"][0]["zero_based"][1]
    exclude = excluded_from(data["cases"][2], baseline) if revised else set()
    spec = ChartSpec(chart=chart, subgroup_size=50, baseline=baseline)
    samples = list(zip(data["data"]["D_nonconforming"], data["data"]["n"]))
    return stream(spec, samples, add_count, exclude)


def revised_p() -> Run:
    """The orange juice p chart revised without samples 15 and 23."""
    return orangejuice("p", revised=True)


@cache
def orangejuice2() -> Run:
    """Orange juice after the adjustment: p chart from samples 31-54 (its LCL clamps at 0)."""
    data = dataset(ORANGEJUICE2)
    spec = ChartSpec(chart="p", subgroup_size=50, baseline=data["phase1"]["zero_based"][1])
    samples = list(zip(data["data"]["D_nonconforming"], data["data"]["n"]))
    return stream(spec, samples, add_count)


@cache
def circuit(chart: str, revised: bool = False) -> Run:
    """Circuit boards: c chart (per 100 boards) or u chart (per board, n = 100) from samples 1-26."""
    data = dataset(CIRCUIT)
    baseline = data["cases"][0]["zero_based"][1]
    exclude = excluded_from(data["cases"][1], baseline) if revised else set()
    counts = data["data"]["x_nonconformities"]
    if chart == "c":
        spec = ChartSpec(chart="c", baseline=baseline)
        return stream(spec, counts, lambda ev, x: ev.add_count(x), exclude)
    spec = ChartSpec(chart="u", subgroup_size=100, baseline=baseline)
    return stream(spec, list(zip(counts, data["data"]["size_boards"])), add_count, exclude)


@cache
def pcmanufact() -> Run:
    """PC assembly: u chart of nonconformities in samples of 5 computers, all 20 samples."""
    data = dataset(PCMANUFACT)
    spec = ChartSpec(chart="u", subgroup_size=5, baseline=data["phase1"]["zero_based"][1])
    return stream(spec, list(zip(data["data"]["x_nonconformities"], data["data"]["n_units"])), add_count)


@cache
def viscosity(method: str, revised: bool = False) -> Run:
    """Viscosity I-MR chart from batches 1-20 (sigma by MR or SD); revised: without batch 4."""
    data = dataset(VISCOSITY)
    baseline = data["cases"][0]["zero_based"][1]
    exclude = excluded_from(data["cases"][2], baseline) if revised else set()
    spec = ChartSpec(chart="imr", baseline=baseline, sigma_method=method)
    return stream(spec, data["data"]["viscosity"], add_individual, exclude)


@cache
def viscosity15(method: str) -> Run:
    """The 15 viscosity values typed into the qcc vignette, sigma by MR or SD."""
    data = dataset(VISCOSITY15)
    spec = ChartSpec(chart="imr", baseline=data["phase1"]["zero_based"][1], sigma_method=method)
    return stream(spec, data["data"]["values"], add_individual)


@cache
def montgomery_cusum() -> Run:
    """Montgomery Example 9.1: tabular CUSUM of 30 individuals, mu0 = 10, sigma = 1, k = 0.5, h = 5."""
    data = dataset(CUSUM)
    par = data["parameters"]
    spec = ChartSpec(chart="cusum", center=par["target_mu0"], sigma=par["sigma"],
                     k=par["k_sigma_units"], h=par["h_sigma_units"])
    return stream(spec, data["data"]["x"], add_individual)


@cache
def nist_ewma() -> Run:
    """NIST 6.3.2.4: EWMA of 20 individuals, EWMA0 = 50, s = 2.0539, lambda = 0.3, k = 3."""
    data = dataset(EWMA)
    par = data["parameters"]
    spec = ChartSpec(chart="ewma", center=par["ewma0_target"], sigma=par["s"],
                     lambda_=par["lambda"], L=par["L"])
    return stream(spec, data["data"]["x"], add_individual)


def _cusum_upper(periods: int) -> list[float]:
    """C+ of the first ``periods`` Montgomery periods, as the engine carries it."""
    run = montgomery_cusum()
    return [run.evaluations[i].cusum_upper or 0.0 for i in range(periods)]


def _first_signal() -> int:
    """The 1-based period of the first CUSUM signal on either side."""
    run = montgomery_cusum()
    return next(i + 1 for i, e in sorted(run.evaluations.items()) if e.violations)


def _run_length_at_signal() -> int:
    """N+: the periods in a row with C+ > 0 up to and including the signal."""
    sums = _cusum_upper(_first_signal())
    return next(i for i, c in enumerate(reversed(sums)) if c == 0.0)


def _estimated_new_mean() -> float:
    """Montgomery's estimate of the shifted mean, mu0 + K + C+/N+, from the engine's sums."""
    run = montgomery_cusum()
    assert run.evaluator.params is not None and run.evaluator.spec.k is not None
    k = run.evaluator.spec.k * run.sigma
    return run.evaluator.params.center + k + _cusum_upper(_first_signal())[-1] / _run_length_at_signal()


# NIST 6.3.2.4 prints its limits cut to 4 decimals (LCL 47.41157 as 47.4115): the data set's
# tolerance for them is 0.0001.
NIST_EWMA_LIMITS = 1e-4


@cache
def flowrate() -> Run:
    """NIST flow rate, 10 batches, I-MR chart."""
    data = dataset(FLOWRATE)
    spec = ChartSpec(chart="imr", baseline=data["phase1"]["zero_based"][1])
    return stream(spec, data["data"]["flowrate"], add_individual)


# ------------------------------------------------------------------------ the published values
@dataclass(frozen=True)
class Published:
    """A published value (data set, dotted path in its JSON) and how to read it off the engine:
    a number, a list of numbers, or a count, period or verdict."""

    dataset: str
    path: str
    engine: Callable[[], Any]
    # Where our documented convention differs from the source's, the value the convention gives
    # from the source's own published inputs; the engine is checked against it instead.
    convention: Callable[[], float] | None = None
    variant: str = ""  # tells apart two checks of one published number (e.g. on another chart)
    tolerance: float | None = None  # the data set's own tolerance where it is wider than the print


def _mean_of_subgroup_means(run: Run, samples: range) -> float:
    """The mean of the plotted subgroup means of the given 0-based samples."""
    return fmean(run.evaluations[i].value for i in samples)


def _individuals(name: str, case: int, run: Callable[[], Run]) -> list[Published]:
    """The centre, limits and sigma published for one individuals-chart case."""
    prefix = f"cases.{case}.expected."
    return [
        Published(name, prefix + "center", lambda: run().primary().center),
        Published(name, prefix + "lcl", lambda: run().primary().lcl),
        Published(name, prefix + "ucl", lambda: run().primary().ucl),
        Published(name, prefix + "sigma_hat", lambda: run().sigma),
    ]


def _r_chart_of_n(n: int, k: float) -> Callable[[], float]:
    """Our R-chart convention for a subgroup of n: d2(n)*sigma + k*3*d3(n)*sigma, with the
    published sigma. qcc instead centres every n on one size-weighted R-bar (0.02230088; see the
    data set's caveats), which puts a subgroup of 3 on the centre line of subgroups of 5."""
    sigma = lookup(dataset(VARIABLE_N), "expected.sigma_hat")["value"]
    return lambda: d2(n) * sigma + k * 3 * d3(n) * sigma

PUBLISHED: list[Published] = [
    # qcc 3.0 vignette 'A quick tour of qcc' (https://luca-scr.github.io/qcc/articles/qcc.html);
    # zone_2sigma: qcc 2.7 CRAN vignette (https://stat.ethz.ch/CRAN/web/packages/qcc/vignettes/
    # qcc_a_quick_tour.html); phase-II mean: qcc vignette, Feb 2018 build (luca-scr/qcc
    # docs/articles/qcc_a_quick_tour.html @ 6c0e283d).
    Published(PISTONRINGS, "expected.xbar.center", lambda: pistonrings("xbar_r").primary().center),
    Published(PISTONRINGS, "expected.xbar.center", lambda: pistonrings("xbar_s").primary().center,
              variant="xbar_s"),
    Published(PISTONRINGS, "expected.xbar.lcl", lambda: pistonrings("xbar_r").primary().lcl),
    Published(PISTONRINGS, "expected.xbar.ucl", lambda: pistonrings("xbar_r").primary().ucl),
    Published(PISTONRINGS, "expected.xbar.zone_2sigma.lcl",
              lambda: (lim := pistonrings("xbar_r").primary()).center - 2 * lim.sd_lower),
    Published(PISTONRINGS, "expected.xbar.zone_2sigma.ucl",
              lambda: (lim := pistonrings("xbar_r").primary()).center + 2 * lim.sd_upper),
    Published(PISTONRINGS, "expected.xbar.phase2_mean_of_subgroup_means",
              lambda: _mean_of_subgroup_means(pistonrings("xbar_r"), range(25, 40))),
    Published(PISTONRINGS, "expected.R.center", lambda: pistonrings("xbar_r").dispersion().center),
    Published(PISTONRINGS, "expected.R.lcl", lambda: pistonrings("xbar_r").dispersion().lcl),
    Published(PISTONRINGS, "expected.R.ucl", lambda: pistonrings("xbar_r").dispersion().ucl),
    Published(PISTONRINGS, "expected.S.center", lambda: pistonrings("xbar_s").dispersion().center),
    Published(PISTONRINGS, "expected.S.lcl", lambda: pistonrings("xbar_s").dispersion().lcl),
    Published(PISTONRINGS, "expected.S.ucl", lambda: pistonrings("xbar_s").dispersion().ucl),
    Published(PISTONRINGS, "expected.sigma_hat.from_R", lambda: pistonrings("xbar_r").sigma),
    Published(PISTONRINGS, "expected.sigma_hat.from_S", lambda: pistonrings("xbar_s").sigma),
    # qcc vignette, Feb 2018 build (luca-scr/qcc docs/articles/qcc_a_quick_tour.html
    # @ 6c0e283d1efd9ace7f3b795b001358e3fae5e0fd): variable limits for n = 5 and n = 3.
    Published(VARIABLE_N, "expected.xbar.center", lambda: pistonrings_variable_n().primary(5).center),
    Published(VARIABLE_N, "expected.xbar.limits_n5.lcl", lambda: pistonrings_variable_n().primary(5).lcl),
    Published(VARIABLE_N, "expected.xbar.limits_n5.ucl", lambda: pistonrings_variable_n().primary(5).ucl),
    Published(VARIABLE_N, "expected.xbar.limits_n3.lcl", lambda: pistonrings_variable_n().primary(3).lcl),
    Published(VARIABLE_N, "expected.xbar.limits_n3.ucl", lambda: pistonrings_variable_n().primary(3).ucl),
    Published(VARIABLE_N, "expected.sigma_hat", lambda: pistonrings_variable_n().sigma),
    Published(VARIABLE_N, "expected.R.center", lambda: pistonrings_variable_n().dispersion(5).center,
              _r_chart_of_n(5, 0)),
    Published(VARIABLE_N, "expected.R.limits_n5.lcl", lambda: pistonrings_variable_n().dispersion(5).lcl),
    Published(VARIABLE_N, "expected.R.limits_n5.ucl", lambda: pistonrings_variable_n().dispersion(5).ucl,
              _r_chart_of_n(5, 1)),
    Published(VARIABLE_N, "expected.R.limits_n3.lcl", lambda: pistonrings_variable_n().dispersion(3).lcl),
    Published(VARIABLE_N, "expected.R.limits_n3.ucl", lambda: pistonrings_variable_n().dispersion(3).ucl,
              _r_chart_of_n(3, 1)),
    # qcc 3.0 vignette 'A quick tour of qcc' (https://luca-scr.github.io/qcc/articles/qcc.html):
    # p and np charts, samples 1-30; the revised p chart without samples 15 and 23.
    Published(ORANGEJUICE, "cases.0.expected.center", lambda: orangejuice("p").primary(50).center),
    Published(ORANGEJUICE, "cases.0.expected.lcl", lambda: orangejuice("p").primary(50).lcl),
    Published(ORANGEJUICE, "cases.0.expected.ucl", lambda: orangejuice("p").primary(50).ucl),
    Published(ORANGEJUICE, "cases.0.expected.sigma_of_p", lambda: orangejuice("p").primary(50).sd_upper),
    Published(ORANGEJUICE, "cases.1.expected.center", lambda: orangejuice("np").primary(50).center),
    Published(ORANGEJUICE, "cases.1.expected.lcl", lambda: orangejuice("np").primary(50).lcl),
    Published(ORANGEJUICE, "cases.1.expected.ucl", lambda: orangejuice("np").primary(50).ucl),
    Published(ORANGEJUICE, "cases.1.expected.sigma", lambda: orangejuice("np").primary(50).sd_upper),
    Published(ORANGEJUICE, "cases.2.expected.center", lambda: revised_p().primary(50).center),
    Published(ORANGEJUICE, "cases.2.expected.lcl", lambda: revised_p().primary(50).lcl),
    Published(ORANGEJUICE, "cases.2.expected.ucl", lambda: revised_p().primary(50).ucl),
    Published(ORANGEJUICE, "cases.2.expected.sigma_of_p", lambda: revised_p().primary(50).sd_upper),
    # qcc 3.0 vignette (https://luca-scr.github.io/qcc/articles/qcc.html): LCL printed as 0 while
    # the zone lines below the centre still come from sigma (sd_lower = sigma_of_p).
    Published(ORANGEJUICE2, "expected.center", lambda: orangejuice2().primary(50).center),
    Published(ORANGEJUICE2, "expected.lcl", lambda: orangejuice2().primary(50).lcl),
    Published(ORANGEJUICE2, "expected.ucl", lambda: orangejuice2().primary(50).ucl),
    Published(ORANGEJUICE2, "expected.sigma_of_p", lambda: orangejuice2().primary(50).sd_lower),
    # qcc 3.0 vignette (https://luca-scr.github.io/qcc/articles/qcc.html): c chart, revised c chart
    # without samples 6 and 20, u chart per board (n = 100) on the revised phase I.
    Published(CIRCUIT, "cases.0.expected.center", lambda: circuit("c").primary().center),
    Published(CIRCUIT, "cases.0.expected.lcl", lambda: circuit("c").primary().lcl),
    Published(CIRCUIT, "cases.0.expected.ucl", lambda: circuit("c").primary().ucl),
    Published(CIRCUIT, "cases.0.expected.sigma", lambda: circuit("c").primary().sd_upper),
    Published(CIRCUIT, "cases.1.expected.center", lambda: circuit("c", revised=True).primary().center),
    Published(CIRCUIT, "cases.1.expected.lcl", lambda: circuit("c", revised=True).primary().lcl),
    Published(CIRCUIT, "cases.1.expected.ucl", lambda: circuit("c", revised=True).primary().ucl),
    Published(CIRCUIT, "cases.1.expected.sigma", lambda: circuit("c", revised=True).primary().sd_upper),
    Published(CIRCUIT, "cases.2.expected.center", lambda: circuit("u", revised=True).primary(100).center),
    Published(CIRCUIT, "cases.2.expected.lcl", lambda: circuit("u", revised=True).primary(100).lcl),
    Published(CIRCUIT, "cases.2.expected.ucl", lambda: circuit("u", revised=True).primary(100).ucl),
    Published(CIRCUIT, "cases.2.expected.sigma_per_unit", lambda: circuit("u", revised=True).sigma),
    # qcc 3.0 vignette (https://luca-scr.github.io/qcc/articles/qcc.html): u chart, n = 5.
    Published(PCMANUFACT, "expected.center", lambda: pcmanufact().primary(5).center),
    Published(PCMANUFACT, "expected.lcl", lambda: pcmanufact().primary(5).lcl),
    Published(PCMANUFACT, "expected.ucl", lambda: pcmanufact().primary(5).ucl),
    Published(PCMANUFACT, "expected.sigma_per_unit", lambda: pcmanufact().sigma),
    # qcc 3.0 vignette (https://luca-scr.github.io/qcc/articles/qcc.html): sigma = MR-bar/1.128,
    # sigma = SD/c4(20), and the revision without batch 4 (the moving range spans the gap).
    *_individuals(VISCOSITY, 0, lambda: viscosity("mr")),
    *_individuals(VISCOSITY, 1, lambda: viscosity("sd")),
    *_individuals(VISCOSITY, 2, lambda: viscosity("mr", revised=True)),
    # qcc vignette, Feb 2018 build (luca-scr/qcc docs/articles/qcc_a_quick_tour.html @ 6c0e283d):
    # the 15 viscosity values, sigma = MR-bar/1.128 and sigma = SD/c4(15).
    *_individuals(VISCOSITY15, 0, lambda: viscosity15("mr")),
    *_individuals(VISCOSITY15, 1, lambda: viscosity15("sd")),
    # NIST/SEMATECH e-Handbook of Statistical Methods, 6.3.2.2 Individuals Control Charts
    # (https://www.itl.nist.gov/div898/handbook/pmc/section3/pmc322.htm), printed to 4 dp.
    Published(FLOWRATE, "expected.individuals.center", lambda: flowrate().primary().center),
    Published(FLOWRATE, "expected.individuals.ucl", lambda: flowrate().primary().ucl),
    Published(FLOWRATE, "expected.individuals.lcl", lambda: flowrate().primary().lcl),
    Published(FLOWRATE, "expected.MR_bar", lambda: flowrate().dispersion().center),
    # Montgomery, Introduction to Statistical Quality Control, Example 9.1 and its tabular CUSUM
    # (as transcribed in kgdunn/process-improve tests/test_control_chart_cusum.py @ 36e4a144):
    # C+ of periods 1-29 to 2 decimals, the signal at period 29 (C+ = 5.28 > H = 5), N+ = 7 and
    # the estimated new mean 10 + 0.5 + 5.28/7 = 11.25.
    Published(CUSUM, "expected.cusum_upper_periods_1_to_29", lambda: _cusum_upper(29)),
    Published(CUSUM, "expected.first_signal_period_1_based", _first_signal),
    Published(CUSUM, "expected.run_length_N_plus_at_signal", _run_length_at_signal),
    Published(CUSUM, "expected.estimated_new_mean", _estimated_new_mean),
    # NIST/SEMATECH e-Handbook of Statistical Methods, 6.3.2.4 EWMA Control Charts
    # (https://www.itl.nist.gov/div898/handbook/pmc/section3/pmc324.htm): the EWMA series to
    # 2 decimals, the asymptotic limits, and no point beyond them.
    Published(EWMA, "expected.ewma_statistic",
              lambda: [nist_ewma().evaluations[i].ewma for i in range(20)]),
    Published(EWMA, "expected.ucl", lambda: nist_ewma().primary().ucl, tolerance=NIST_EWMA_LIMITS),
    Published(EWMA, "expected.lcl", lambda: nist_ewma().primary().lcl, tolerance=NIST_EWMA_LIMITS),
    Published(EWMA, "expected.out_of_control",
              lambda: any(not e.in_control for e in nist_ewma().evaluations.values())),
]


def _param(case: Published) -> Any:
    """A pytest parameter for one check, named after its data set and path."""
    variant = f"[{case.variant}]" if case.variant else ""
    return pytest.param(case, id=f"{case.dataset}:{case.path}{variant}")


@pytest.mark.parametrize("case", [_param(c) for c in PUBLISHED])
def test_published_value(case: Published) -> None:
    """The engine reproduces one published number (source: the comment beside its entry above)."""
    entry = lookup(dataset(case.dataset), case.path)
    assert entry["status"] == "published"
    where = f"{case.dataset}:{case.path} [{source_label(case.dataset, entry)}]"
    if case.convention is None:
        assert_published(case.engine(), entry, where, case.tolerance)
    else:
        # the published sigma has 7 significant digits, so the convention's value has as many
        assert case.engine() == pytest.approx(case.convention(), rel=5e-7), where
        assert abs(case.engine() - entry["value"]) > 1e-4, f"{where}: now follows qcc"


def assert_published(actual: Any, entry: dict[str, Any], where: str, tol: float | None) -> None:
    """The engine's number (or list) rounds to what was printed; a count, period or verdict is exact."""
    printed = entry.get("printed")
    if printed is None and "printed_precision" in entry:  # e.g. "2 decimals", values as printed
        places = int(entry["printed_precision"].split()[0])
        printed = [f"{v:.{places}f}" for v in entry["value"]]
    if printed is None:
        assert actual == entry["value"] and type(actual) is type(entry["value"]), (
            f"{where}: engine {actual!r}, published {entry['value']!r}")
    elif isinstance(printed, list):
        assert len(actual) == len(printed), f"{where}: engine gave {len(actual)} values"
        for i, (value, text) in enumerate(zip(actual, printed)):
            assert_printed(value, text, f"{where}[{i}]", tol)
    else:
        assert_printed(actual, printed, where, tol)


def _published_paths(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Dotted paths of every entry marked "published" under ``node``."""
    if isinstance(node, dict):
        if node.get("status") == "published":
            yield ".".join(prefix)
            return
        for key, value in node.items():
            yield from _published_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _published_paths(value, (*prefix, str(i)))


def test_every_published_value_is_checked() -> None:
    """Every entry with status "published" in every data set has a check in PUBLISHED, and no other."""
    published = {f"{path.stem}:{p}" for path in sorted(DATASETS.glob("*.json"))
                 for p in _published_paths(dataset(path.stem))}
    checked = {f"{case.dataset}:{case.path}" for case in PUBLISHED}
    assert published, "no published values found"
    assert checked == published


# ---------------------------------------------------------- published readings as chart outcomes
@pytest.mark.parametrize(("run", "samples", "expected"), [
    # qcc man/orangejuice.Rd and Montgomery via qcc 3.0 vignette: samples 15 (new cardboard) and 23
    # (inexperienced operator) are out of control on the p chart (p = 0.44 and 0.48 > UCL).
    pytest.param(lambda: orangejuice("p"), range(0, 30), {15: "beyond_ucl", 23: "beyond_ucl"},
                 id="orangejuice-p-15-23"),
    pytest.param(lambda: orangejuice("np"), range(0, 30), {15: "beyond_ucl", 23: "beyond_ucl"},
                 id="orangejuice-np-15-23"),
    # qcc man/circuit.Rd: samples 6 (x = 5) and 20 (x = 39) are outside the c chart limits.
    pytest.param(lambda: circuit("c"), range(0, 26), {6: "beyond_lcl", 20: "beyond_ucl"},
                 id="circuit-c-6-20"),
    # qcc 3.0 vignette: "batch 4 is out-of-control because of a process temperature controller
    # failure" (x = 35.96 > UCL 35.61096), on both sigma estimates.
    pytest.param(lambda: viscosity("mr"), range(0, 20), {4: "beyond_ucl"}, id="viscosity-mr-batch4"),
    pytest.param(lambda: viscosity("sd"), range(0, 20), {4: "beyond_ucl"}, id="viscosity-sd-batch4"),
    # qcc 3.0 vignette x-bar chart with newdata = diameter[26:40, ]: the phase-II subgroups 37-39
    # lie above the published UCL 74.0143 (data set's computed cross-check of the plotted chart).
    pytest.param(lambda: pistonrings("xbar_r"), range(0, 40), {37: "beyond_ucl", 38: "beyond_ucl",
                                                                39: "beyond_ucl"},
                 id="pistonrings-phase2-37-39"),
    # NIST e-Handbook 6.3.2.2: the flow-rate process is in control (no point outside the limits).
    # NIST e-Handbook 6.3.2.4: no EWMA point beyond its (exact) limits.
    pytest.param(nist_ewma, range(0, 20), {}, id="nist-ewma-in-control"),
    pytest.param(flowrate, range(0, 10), {}, id="nist-flowrate-in-control"),
    # Cross-checks computed from the published revised limits (status "computed" in the data sets):
    # orange juice sample 41 (p = 0.04) falls below the revised LCL 0.04070284; the circuit phase II
    # (samples 27-46) stays inside the revised c limits.
    pytest.param(lambda: orangejuice("p", revised=True), range(30, 54), {41: "beyond_lcl"},
                 id="orangejuice-revised-phase2-41"),
    pytest.param(lambda: circuit("c", revised=True), range(26, 46), {}, id="circuit-revised-phase2"),
])
def test_published_out_of_control_points(run: Callable[[], Run], samples: range,
                                         expected: dict[int, str]) -> None:
    """Exactly the points called out of control lie beyond a limit (1-based sample -> zone)."""
    assert run().beyond(samples) == expected


def test_flowrate_moving_ranges_match_nist() -> None:
    """Each moving range NIST 6.3.2.2 prints (pmc322.htm) is the spread of the point, in MR limits."""
    run = flowrate()
    printed = dataset(FLOWRATE)["data"]["moving_range_as_printed"]
    mr_limits = run.dispersion()
    assert len(run.evaluations) == len(printed)
    for i, text in enumerate(printed):
        spread = run.evaluations[i].spread
        if text is None:
            assert spread is None, f"batch {i + 1} has no moving range"
            continue
        assert_printed(spread, text, f"moving range of batch {i + 1}")
        assert spread is not None and mr_limits.lcl <= spread <= mr_limits.ucl  # NIST: in control


def test_clamped_lcl_keeps_zone_lines_from_sigma() -> None:
    """orangejuice2 (qcc 3.0 vignette): LCL clamps at 0 but a low p is in zone A, not beyond."""
    data = dataset(ORANGEJUICE2)
    run = orangejuice2()
    limits = run.primary(50)
    sigma = float(data["expected"]["sigma_of_p"]["printed"])
    assert limits.lcl == 0.0 and limits.center - 3 * limits.sd_lower < 0.0
    # sample 83 (D = 1, p = 0.02) lies more than 2 sigma below the centre line, above the LCL
    index = data["data"]["sample"].index(83)
    assert data["data"]["D_nonconforming"][index] == 1
    assert limits.center - 3 * sigma < run.evaluations[index].value < limits.center - 2 * sigma
    assert run.evaluations[index].zone == "zone_a_lower"


def test_xbar_chart_with_sigma_from_s_matches_computed_crosscheck() -> None:
    """x-bar limits of chart="xbar_s" are x-double-bar +/- 3 (s-bar/c4)/sqrt(5) (computed, not published)."""
    computed = dataset(PISTONRINGS)["computed_crosschecks"]["xbar_chart_with_sigma_from_S"]
    limits = pistonrings("xbar_s").primary()
    assert_printed(limits.lcl, repr(computed["lcl_exact"]["value"]), "x-bar/S LCL")
    assert_printed(limits.ucl, repr(computed["ucl_exact"]["value"]), "x-bar/S UCL")


# --------------------------------------------------------------------------------- capability
# qcc "A quick tour of qcc", section "Process capability analysis": luca-scr/qcc
# docs/articles/qcc.html @ 1eeb804c2be0e4bc8b224170eb72bc064c533478 (qcc 3.0, dated 28 Apr 2020;
# https://luca-scr.github.io/qcc/articles/qcc.html). For q <- qcc(diameter[1:25,], type="xbar")
# it prints "Number of obs = 125, Center = 74.00118, StdDev = 0.009785039" and, for
# processCapability(q, spec.limits=c(73.95,74.05), target=74.02), Cp 1.703, Cp_l 1.743, Cp_u 1.663,
# Cp_k 1.663 (the call without target prints the same indices to 2 dp: 1.70, 1.74, 1.66, 1.66;
# only Cpm depends on the target). Cp_l and Cp_u are the one-sided indices.
LSL, USL = 73.95, 74.05
QCC_CAPABILITY = {"mean": "74.00118", "sigma": "0.009785039",
                  "cp": "1.703", "cp_l": "1.743", "cp_u": "1.663", "cp_k": "1.663"}


@cache
def pistonrings_capability(usl: float | None, lsl: float | None) -> Capability:
    """Capability of the piston-ring x-bar/R chart at the moment its 25-subgroup baseline completes."""
    data = dataset(PISTONRINGS)
    baseline = data["phase1"]["zero_based"][1]
    ev = Evaluator(ChartSpec(chart="xbar_r", subgroup_size=5, baseline=baseline, usl=usl, lsl=lsl))
    for subgroup in data["data"]["values"][:baseline]:
        ev.add_values(subgroup)
    capability = ev.capability()
    assert capability is not None
    return capability


def test_capability_matches_qcc_vignette() -> None:
    """Cp and Cpk of the piston rings with specs 73.95/74.05 are qcc's printed 1.703 and 1.663."""
    cap = pistonrings_capability(USL, LSL)
    assert_printed(cap.mean, QCC_CAPABILITY["mean"], "capability centre")
    assert_printed(cap.sigma_within, QCC_CAPABILITY["sigma"], "capability StdDev")
    assert_printed(cap.cp, QCC_CAPABILITY["cp"], "Cp")
    assert_printed(cap.cpk, QCC_CAPABILITY["cp_k"], "Cpk")
    assert cap.pp is not None and cap.ppk is not None and cap.sigma_overall is not None


@pytest.mark.parametrize(("usl", "lsl", "printed"), [
    pytest.param(USL, None, QCC_CAPABILITY["cp_u"], id="usl-only-cp_u"),
    pytest.param(None, LSL, QCC_CAPABILITY["cp_l"], id="lsl-only-cp_l"),
])
def test_capability_with_one_spec_limit(usl: float | None, lsl: float | None, printed: str) -> None:
    """With one spec limit Cp and Pp are None and Cpk is the one-sided index qcc prints (Cp_u, Cp_l)."""
    cap = pistonrings_capability(usl, lsl)
    assert cap.cp is None and cap.pp is None
    assert_printed(cap.cpk, printed, "one-sided Cpk")
    assert cap.sigma_overall is not None and cap.ppk is not None
    if usl is not None:
        distance = usl - cap.mean
    else:
        assert lsl is not None
        distance = cap.mean - lsl
    assert cap.ppk == pytest.approx(distance / (3 * cap.sigma_overall))


# ----------------------------------------------------------------------------- table constants
@pytest.mark.parametrize("n", range(2, 11))
def test_constants_round_to_published_table(n: int) -> None:
    """d2, d3 and c4 round to the printed factors table (constants.json: Montgomery App. VI)."""
    with open(REFERENCE / "constants.json", encoding="utf-8") as f:
        row = json.load(f)["table"][str(n)]
    assert_printed(d2(n), row["d2"], f"d2({n})")
    assert_printed(d3(n), row["d3"], f"d3({n})")
    assert_printed(c4(n), row["c4"], f"c4({n})")
