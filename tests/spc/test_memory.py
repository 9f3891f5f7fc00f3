"""CUSUM and EWMA charts: streaming with restarts equals a whole-series reading of the formulas,
options (FIR, restart after a signal, subgroups, baseline sigma), refused settings, capability."""

import json
import re
from math import sqrt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.spc import PRESETS, ChartSpec, Evaluation, Evaluator
from bridge.spc.constants import d2
from bridge.spc.memory import CUSUM_LOWER, CUSUM_UPPER, EWMA_LOWER, EWMA_UPPER
from tests.spc.test_streaming import VALUES, stream

TOL = 1e-9


def cusum_series(xs: list[float], mu0: float, sd: float, k: float, h: float, fir: bool = False,
                 reset: bool = False) -> tuple[list[tuple[float, float]], list[tuple[int, int]]]:
    """Montgomery's tabular CUSUM over the whole series: (C+, C-) per point and the signals
    (index, rule id) where a sum starts to exceed H (after a restart, any excess is new)."""
    big_k, big_h = k * sd, h * sd
    head = big_h / 2 if fir else 0.0
    up = lo = head
    sums, signals = [], []
    was = (False, False)
    for i, x in enumerate(xs):
        up = max(0.0, x - (mu0 + big_k) + up)  # as printed, so exact ties on H compare alike
        lo = max(0.0, (mu0 - big_k) - x + lo)
        sums.append((up, lo))
        now = (up > big_h, lo > big_h)
        signals += [(i, rule) for rule, a, b in ((CUSUM_UPPER, now[0], was[0]),
                                                 (CUSUM_LOWER, now[1], was[1])) if a and not b]
        was = now
        if reset:
            if now[0]:
                up = head
            if now[1]:
                lo = head
            if any(now):
                was = (False, False)
    return sums, signals


def ewma_series(xs: list[float], mu0: float, sd: float, lam: float, big_l: float
                ) -> tuple[list[tuple[float, float, float]], list[tuple[int, int]]]:
    """The EWMA over the whole series: (z, lcl, ucl) per point with the exact limits of point
    i = 1, 2, ... and the signals where z starts to lie beyond them."""
    z = mu0
    out, signals = [], []
    was = (False, False)
    for i, x in enumerate(xs, 1):
        z = lam * x + (1 - lam) * z
        half = big_l * sd * sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * i)))
        out.append((z, mu0 - half, mu0 + half))
        now = (z > mu0 + half, z < mu0 - half)
        signals += [(i - 1, rule) for rule, a, b in ((EWMA_UPPER, now[0], was[0]),
                                                     (EWMA_LOWER, now[1], was[1])) if a and not b]
        was = now
    return out, signals


def flat(rows: list[tuple[float | None, ...]]) -> list[float | None]:
    """The rows' numbers one after another (pytest.approx compares flat sequences)."""
    return [v for row in rows for v in row]


def signals_of(evaluations: list[Evaluation]) -> list[tuple[int, int]]:
    """(sample index, rule id) of every violation raised."""
    return [(v.sample_index, v.rule_id) for e in evaluations for v in e.violations]


SHIFTED = st.lists(st.one_of(VALUES, VALUES.map(lambda x: x + 1.5)), min_size=1, max_size=150)


@settings(max_examples=200, deadline=None)
@given(SHIFTED, st.sets(st.integers(0, 150)), st.sampled_from([0.25, 0.5, 1.0]),
       st.sampled_from([2.0, 4.0, 5.0]), st.booleans(), st.booleans())
def test_cusum_stream_with_restarts_equals_whole_series(
        values: list[float], cuts: set[int], k: float, h: float, fir: bool, reset: bool) -> None:
    """Fixed mu0 and sigma: C+, C- and the signals equal the formulas over the whole series."""
    spec = ChartSpec(chart="cusum", center=10.0, sigma=1.0, k=k, h=h, fir=fir,
                     reset_after_signal=reset)
    evaluations = stream(spec, [[x] for x in values], cuts)
    sums, signals = cusum_series(values, 10.0, 1.0, k, h, fir, reset)
    assert flat([(e.cusum_upper, e.cusum_lower) for e in evaluations]) == pytest.approx(
        flat(sums), abs=TOL)
    assert signals_of(evaluations) == signals
    assert [e.in_control for e in evaluations] == [up <= h and lo <= h for up, lo in sums]
    assert all(e.ewma is None and e.value == x for e, x in zip(evaluations, values))


@settings(max_examples=200, deadline=None)
@given(SHIFTED, st.sets(st.integers(0, 150)), st.sampled_from([0.05, 0.2, 0.3, 1.0]),
       st.sampled_from([2.7, 3.0]))
def test_ewma_stream_with_restarts_equals_whole_series(
        values: list[float], cuts: set[int], lam: float, big_l: float) -> None:
    """Fixed mu0 and sigma: z, each point's exact limits and the signals equal the formulas."""
    spec = ChartSpec(chart="ewma", center=10.0, sigma=1.0, lambda_=lam, L=big_l)
    evaluations = stream(spec, [[x] for x in values], cuts)
    series, signals = ewma_series(values, 10.0, 1.0, lam, big_l)
    got = [(e.ewma, e.limits.lcl, e.limits.ucl) for e in evaluations if e.limits is not None]
    assert flat(got) == pytest.approx(flat(series), abs=TOL)
    assert signals_of(evaluations) == signals
    assert all(e.cusum_upper is None for e in evaluations)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(VALUES, min_size=4, max_size=4), min_size=3, max_size=40),
       st.sets(st.integers(0, 40)), st.integers(2, 10), st.sampled_from(["cusum", "ewma"]))
def test_subgroups_from_a_baseline_stream_equal_whole_series(
        samples: list[list[float]], cuts: set[int], baseline: int, chart: str) -> None:
    """n = 4, mu0 and sigma = R-bar/d2 from the baseline; the recursion starts at the first
    baseline subgroup and uses sd = sigma/2, across restarts."""
    spec = ChartSpec(chart=chart, subgroup_size=4, baseline=baseline)
    evaluations = stream(spec, samples, cuts)
    judged = {e.index: e for e in evaluations if e.zone is not None}
    if len(samples) < baseline:
        assert not judged
        return
    phase1 = samples[:baseline]
    mu0 = sum(map(sum, phase1)) / (4 * baseline)
    ranges = [max(s) - min(s) for s in phase1]
    sigma = sum(r / d2(4) for r in ranges) / baseline
    if sigma == 0.0:  # a constant baseline: the formulas divide by zero; the engine's limits are 0
        return
    means = [sum(s) / 4 for s in samples]
    ordered = [judged[i] for i in range(len(samples))]
    if chart == "cusum":
        sums, signals = cusum_series(means, mu0, sigma / 2, 0.5, 5.0)
        assert flat([(e.cusum_upper, e.cusum_lower) for e in ordered]) == pytest.approx(
            flat(sums), abs=TOL)
    else:
        series, signals = ewma_series(means, mu0, sigma / 2, 0.2, 3.0)
        assert [e.ewma for e in ordered] == pytest.approx([z for z, _, _ in series], abs=TOL)
    assert signals_of(ordered) == signals


def test_individuals_sigma_comes_from_the_moving_range() -> None:
    """n = 1 from a baseline: sigma = MR-bar/1.128, as on the imr chart, and mu0 the baseline mean."""
    values = [10.0, 12.0, 11.0, 13.0, 12.0, 10.0]
    cusum = Evaluator(ChartSpec(chart="cusum", baseline=6))
    imr = Evaluator(ChartSpec(chart="imr", baseline=6))
    for x in values:
        cusum.add_values([x])
        imr.add_values([x])
    assert cusum.params == imr.params
    assert cusum.params is not None and cusum.params.sigma == pytest.approx(1.6 / 1.128)


def test_fir_head_start_signals_a_shifted_start_sooner() -> None:
    """With FIR both sums start at H/2: a process 1.5 sigma off target from its first point signals
    at point 3 instead of point 6."""
    shifted = [11.5] * 10
    plain = Evaluator(ChartSpec(chart="cusum", center=10.0, sigma=1.0))
    fir = Evaluator(ChartSpec(chart="cusum", center=10.0, sigma=1.0, fir=True))
    first_plain = next(i for i, x in enumerate(shifted) if plain.add_values([x])[0].violations)
    first_fir = next(i for i, x in enumerate(shifted) if fir.add_values([x])[0].violations)
    assert (first_plain, first_fir) == (5, 2)
    (on_target,) = Evaluator(ChartSpec(chart="cusum", center=10.0, sigma=1.0, fir=True)).add_values([10.0])
    assert (on_target.cusum_upper, on_target.cusum_lower) == (2.0, 2.0)  # H/2 - K, both sides


def test_reset_after_signal_restarts_the_sum() -> None:
    """A sustained shift: Montgomery's accumulating sum signals once; with the restart it signals
    every few points, each time from 0."""
    shifted = [12.0] * 12
    keep = Evaluator(ChartSpec(chart="cusum", center=10.0, sigma=1.0))
    reset = Evaluator(ChartSpec(chart="cusum", center=10.0, sigma=1.0, reset_after_signal=True))
    kept = [e for x in shifted for e in keep.add_values([x])]
    restarted = [e for x in shifted for e in reset.add_values([x])]
    assert signals_of(kept) == [(3, CUSUM_UPPER)]
    assert signals_of(restarted) == [(3, CUSUM_UPPER), (7, CUSUM_UPPER), (11, CUSUM_UPPER)]
    assert [e.cusum_upper for e in restarted[3:5]] == [6.0, 1.5]
    assert kept[-1].cusum_upper == pytest.approx(18.0) and not kept[-1].in_control


def test_limits_of_the_retained_event() -> None:
    """CUSUM: centre 0, limits +/-H, 1-sigma lines sigma/sqrt(n); EWMA: the asymptotic limits."""
    cusum = Evaluator(ChartSpec(chart="cusum", subgroup_size=4, center=5.0, sigma=2.0, h=4.0))
    assert tuple(cusum.limits()[0]) == (0.0, 4.0, -4.0, 1.0, 1.0)  # type: ignore[index]
    ewma = Evaluator(ChartSpec(chart="ewma", center=5.0, sigma=2.0, lambda_=0.5))
    width = 3 * 2.0 * sqrt(0.5 / 1.5)
    assert ewma.limits()[0][:3] == pytest.approx((5.0, 5.0 + width, 5.0 - width))  # type: ignore[index]
    assert cusum.limits()[1] is None and ewma.limits()[1] is None  # type: ignore[index]


def test_capability_as_on_the_individuals_chart() -> None:
    """Cp and Cpk use the chart's sigma, Pp and Ppk the overall sd, as on imr."""
    values = [10.0, 10.4, 9.8, 10.1, 9.7, 10.2, 10.0, 9.9]
    indices = []
    for chart in ("imr", "cusum", "ewma"):
        ev = Evaluator(ChartSpec(chart=chart, baseline=8, usl=11.0, lsl=9.0))
        for x in values:
            ev.add_values([x])
        indices.append(ev.capability())
    assert indices[0] is not None and indices[0] == indices[1] == indices[2]


def test_state_after_json_continues_exactly() -> None:
    """The carried sums are in the JSON state: a restored chart's next C+ is bit for bit the same."""
    spec = ChartSpec(chart="cusum", center=10.0, sigma=1.0)
    whole, cut = Evaluator(spec), Evaluator(spec)
    for x in (10.7, 11.3, 10.9):
        whole.add_values([x])
        cut.add_values([x])
    cut = Evaluator(spec, json.loads(json.dumps(cut.state())))
    assert whole.add_values([11.1])[0].cusum_upper == cut.add_values([11.1])[0].cusum_upper


@pytest.mark.parametrize(("options", "message"), [
    ({"chart": "cusum", "rules": ()}, None),
    ({"chart": "cusum", "rules": PRESETS["rule1"]}, "Nelson rules do not apply"),
    ({"chart": "ewma", "dispersion_rules": PRESETS["nelson"]}, "leave out dispersion_rules"),
    ({"chart": "ewma", "k": 0.5}, "k applies to cusum charts only"),
    ({"chart": "imr", "lambda_": 0.2}, "lambda applies to ewma charts only"),
    ({"chart": "ewma", "lambda_": 0.0}, "lambda must be a number > 0 and <= 1"),
    ({"chart": "ewma", "L": -3.0}, "L must be a number > 0"),
    ({"chart": "cusum", "h": 0.0}, "h must be a number > 0"),
    ({"chart": "cusum", "k": -1.0}, "k must be a number >= 0"),
    ({"chart": "cusum", "fir": 1}, "fir must be true or false"),
    ({"chart": "cusum", "center": 1.0, "ucl": 2.0}, "fixed ucl/lcl do not apply"),
    ({"chart": "ewma", "subgroup_size": 30}, "subgroup_size of a ewma chart must be 1..25"),
    ({"chart": "ewma", "subgroup_size": 3, "sigma_method": "mr"}, "choose one of ('r', 's')"),
    ({"chart": "cusum", "sigma_method": "r"}, "choose one of ('mr', 'sd')"),
])
def test_refused_settings(options: dict[str, object], message: str | None) -> None:
    """Settings that cannot work are refused with a message saying what to change."""
    if message is None:
        assert ChartSpec(**options).rules == ()  # type: ignore[arg-type]
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        ChartSpec(**options)  # type: ignore[arg-type]
