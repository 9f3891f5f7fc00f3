"""Streaming equals batch: point-by-point evaluation, saved and restored at random points,
raises exactly the violations of the whole-series oracle."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.spc import ChartSpec, Evaluation, Evaluator, Limits, RuleSpec
from tests.spc import oracle

# Values on a grid of quarter sigmas make ties, equal pairs and exact boundaries common.
GRID = st.integers(min_value=-16, max_value=16).map(lambda k: 10.0 + k / 4)
VALUES = st.one_of(GRID, st.floats(min_value=5.0, max_value=15.0))


@st.composite
def rule_sets(draw: st.DrawFn) -> tuple[RuleSpec, ...]:
    """Any subset of the rules, with random counts and windows."""
    chosen = draw(st.sets(st.integers(1, 8), min_size=1))
    specs = []
    for rule_id in sorted(chosen):
        if rule_id == 1:
            specs.append(RuleSpec.default(1))
        elif rule_id in (5, 6):
            window = draw(st.integers(2, 6))
            specs.append(RuleSpec.default(rule_id, window=window,
                                          count=draw(st.integers(1, window))))
        else:
            specs.append(RuleSpec.default(rule_id, count=draw(st.integers(2, 12))))
    return tuple(specs)


def stream(spec: ChartSpec, samples: list[list[float]], cuts: set[int]) -> list[Evaluation]:
    """Evaluate sample by sample, saving the state to JSON and restoring it at each cut."""
    evaluator = Evaluator(spec)
    out: list[Evaluation] = []
    for i, sample in enumerate(samples):
        if i in cuts:
            evaluator = Evaluator(spec, json.loads(json.dumps(evaluator.state())))
        out += evaluator.add_values(sample)
    return out


def on_chart(evaluations: list[Evaluation], chart: str) -> list[tuple[int, int]]:
    """(sample index, rule id) of the streamed violations on one chart."""
    return sorted((v.sample_index, v.rule_id) for e in evaluations for v in e.violations
                  if v.chart == chart)


def expected(rules: tuple[RuleSpec, ...], points: list[Evaluation], xs: list[float],
             lims: list[Limits]) -> list[tuple[int, int]]:
    """The oracle's violations over ``points``, by sample index."""
    fired, _ = oracle.violations(rules, xs, lims)
    return sorted((points[i].index, rule_id) for i, rule_id in fired)


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=120), rule_sets(), rule_sets(),
       st.sets(st.integers(0, 120)))
def test_individuals_stream_equals_batch(
    values: list[float], rules: tuple[RuleSpec, ...], mr_rules: tuple[RuleSpec, ...],
    cuts: set[int],
) -> None:
    """Fixed limits: I chart and MR chart violations equal the oracle's, across restarts."""
    spec = ChartSpec(chart="imr", center=10.0, sigma=1.0, rules=rules, dispersion_rules=mr_rules)
    evaluations = stream(spec, [[x] for x in values], cuts)
    assert [e.index for e in evaluations] == list(range(len(values)))
    limits = [e.limits for e in evaluations]
    assert on_chart(evaluations, "i") == expected(rules, evaluations, values, limits)
    ranges = [e for e in evaluations if e.spread is not None]
    mr_limits = Evaluator(spec).limits()[1]  # type: ignore[index]
    assert on_chart(evaluations, "mr") == expected(
        mr_rules, ranges, [e.spread for e in ranges], [mr_limits] * len(ranges))
    i_only = ChartSpec(chart="imr", center=10.0, sigma=1.0, rules=rules, dispersion_rules=())
    _, holding = oracle.violations(rules, values, limits)  # type: ignore[arg-type]
    assert [e.in_control for e in stream(i_only, [[x] for x in values], cuts)] == [
        not h for h in holding]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(VALUES, min_size=1, max_size=5), min_size=6, max_size=60),
       rule_sets(), st.sets(st.integers(0, 60)), st.integers(2, 6))
def test_subgroups_with_baseline_stream_equals_batch(
    samples: list[list[float]], rules: tuple[RuleSpec, ...], cuts: set[int], baseline: int
) -> None:
    """x-bar/R from a baseline: the replayed phase I plus phase II equal the oracle over all."""
    spec = ChartSpec(chart="xbar_r", subgroup_size=5, baseline=baseline, rules=rules)
    evaluations = stream(spec, samples, cuts)
    # phase-I samples come out twice: unjudged, then replayed when the baseline completes
    judged = {e.index: e for e in evaluations if e.zone is not None}
    ordered = [judged[i] for i in sorted(judged)]
    if not ordered:
        return
    assert [e.index for e in ordered] == list(range(ordered[0].index, len(samples)))
    assert on_chart(evaluations, "xbar") == expected(
        rules, ordered, [e.value for e in ordered], [e.limits for e in ordered])
