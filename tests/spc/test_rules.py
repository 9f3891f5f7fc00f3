"""Each Nelson rule fires at a known point, misses a near miss, and follows the re-firing policy."""

import pytest

from bridge.spc import ChartSpec, Evaluator, RuleSpec, resolve_rules


def fixed(rules: object, **spec: object) -> Evaluator:
    """An individuals chart with centre 0 and sigma 1 (no baseline) and the given rules."""
    return Evaluator(ChartSpec(chart="imr", center=0.0, sigma=1.0, rules=resolve_rules(rules),
                               dispersion_rules=(), **spec))  # type: ignore[arg-type]


def fired(evaluator: Evaluator, values: list[float]) -> list[tuple[int, int]]:
    """(index, rule id) of every violation raised while feeding ``values``."""
    return [(v.sample_index, v.rule_id) for x in values for e in evaluator.add_values([x])
            for v in e.violations]


UP9 = [0.5] * 9
INCREASING6 = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
ALTERNATING14 = [0.1, -0.1] * 7

# rule, series on which it fires, the index where it fires, near miss on which it must not
CASES = [
    (1, [0.0, 0.0, 3.5], 2, [0.0, 3.0, -3.0]),                          # on the limit is inside
    (1, [0.0, -3.01], 1, [2.99, -2.99]),
    (2, UP9, 8, [0.5] * 8 + [0.0] + [0.5] * 8),                          # centre breaks the run
    (2, [-0.5] * 9, 8, [-0.5] * 8 + [0.5]),
    (3, INCREASING6, 5, [0.0, 0.1, 0.2, 0.2, 0.3, 0.4, 0.5]),           # equal pair breaks it
    (3, [0.5, 0.4, 0.3, 0.2, 0.1, 0.0], 5, [0.0, 0.1, 0.2, 0.3, 0.4]),
    (4, ALTERNATING14, 13, ALTERNATING14[:13] + [0.1]),
    (4, [-0.2, 0.3] * 7, 13, [0.1, -0.1] * 3 + [-0.1] + [0.1, -0.1] * 4),
    (5, [0.0, 2.5, 0.0, 2.5], 3, [0.0, 2.5, 0.0, 0.0, 2.5, 2.0, -2.5]),  # 2 sigma is not beyond
    (5, [-2.1, -3.5, 0.0], 2, [-2.5, 2.5, 0.0]),                     # beyond 3 counts as 2
    (6, [0.0, 1.5, 1.5, 0.0, 1.5, 1.5], 5, [1.5, 1.5, -1.5, 1.5, 0.0, 1.0, 1.5]),
    (7, [0.5] * 15, 14, [0.5] * 14 + [1.5]),
    (7, [1.0, -1.0] * 7 + [0.0], 14, [1.0, -1.0] * 7),                  # within is inclusive
    (8, [1.5, -1.5] * 4, 7, [1.5] * 8),                                  # needs both sides
    (8, [2.0] * 7 + [-1.01], 7, [1.5, -1.5, 1.5, -1.5, 1.0, 1.5, -1.5, 1.5]),
]


@pytest.mark.parametrize(("rule", "series", "index", "near_miss"), CASES)
def test_rule_fires_at_known_index_and_not_on_near_miss(
    rule: int, series: list[float], index: int, near_miss: list[float]
) -> None:
    """The rule alone fires exactly once, at ``index``; the near miss raises nothing."""
    assert fired(fixed([rule]), series) == [(index, rule)]
    assert fired(fixed([rule]), near_miss) == []


@pytest.mark.parametrize("rule", range(1, 9))
def test_no_rule_fires_before_its_window_is_full(rule: int) -> None:
    """A window one point short of full never fires, whatever the points are."""
    spec = RuleSpec.default(rule)
    short = {1: [], 2: UP9[:-1], 3: INCREASING6[:-1], 4: ALTERNATING14[:-1], 5: [2.5, 2.5],
             6: [1.5] * 4, 7: [0.5] * 14, 8: [1.5, -1.5] * 3 + [1.5]}[rule]
    assert len(short) == spec.span - 1
    assert fired(fixed([rule]), short) == []


def test_continuing_pattern_fires_once_and_again_after_it_stops() -> None:
    """Rule 2 fires when the run reaches nine, not for the 10th..12th, and again on a new run."""
    evaluator = fixed([2])
    series = [0.5] * 12 + [-0.5] + [0.5] * 9
    evaluations = [e for x in series for e in evaluator.add_values([x])]
    assert [(v.sample_index, v.rule_id) for e in evaluations for v in e.violations] == [(8, 2), (21, 2)]
    assert [e.in_control for e in evaluations[7:13]] == [True, False, False, False, False, True]


def test_rule1_continuing_beyond_limit_is_one_alarm_but_every_point_out_of_control() -> None:
    """Consecutive points beyond the UCL raise one violation; each is out of control."""
    evaluator = fixed([1])
    evaluations = [e for x in [3.5, 4.0, 3.2, 0.0, 3.3] for e in evaluator.add_values([x])]
    assert [[v.sample_index for v in e.violations] for e in evaluations] == [[0], [], [], [], [4]]
    assert [e.in_control for e in evaluations] == [False, False, False, True, False]
    assert [e.zone for e in evaluations][:3] == ["beyond_ucl"] * 3


def test_jump_to_the_other_side_is_a_new_violation() -> None:
    """Beyond the UCL then at once beyond the LCL: two separate rule-1 violations."""
    assert fired(fixed([1]), [3.5, -3.5]) == [(0, 1), (1, 1)]


def test_all_rules_on_report_every_rule_that_starts_holding() -> None:
    """With all eight rules, a point can raise several violations at once (rules 5 and 6)."""
    assert fired(fixed("nelson"), [0.0, 2.5, 1.5, 2.5, 2.5]) == [(3, 5), (4, 6)]


def test_configured_counts_and_severity() -> None:
    """Counts and severities are per characteristic; names follow the counts."""
    rules = resolve_rules([{"id": 2, "count": 7, "severity": "CRITICAL"}, {"id": 5, "count": 3,
                                                                          "window": 4}])
    evaluator = fixed([{"id": 2, "count": 7, "severity": "CRITICAL"}])
    violations = [v for x in [0.5] * 7 for e in evaluator.add_values([x]) for v in e.violations]
    assert [(v.sample_index, v.rule_name, v.severity) for v in violations] == [
        (6, "Seven points in a row on one side of the center line", "CRITICAL")]
    assert rules[1].name == "Three of four points beyond 2 sigma on the same side"


def test_presets() -> None:
    """Nelson has all eight; Western Electric is 1, 2 (eight points), 5, 6; rule1 is rule 1."""
    assert [r.id for r in resolve_rules("nelson")] == list(range(1, 9))
    western = resolve_rules("western_electric")
    assert [(r.id, r.count) for r in western] == [(1, 1), (2, 8), (5, 2), (6, 4)]
    assert fired(fixed("western_electric"), [0.5] * 8) == [(7, 2)]
    assert [r.id for r in resolve_rules("rule1")] == [1]


def test_default_names_and_severities_in_the_seed_style() -> None:
    """Rule 1 is CRITICAL and named as in the seed; the others default to WARNING."""
    rules = resolve_rules("nelson")
    assert rules[0].name == "One point beyond 3 sigma" and rules[0].severity == "CRITICAL"
    assert rules[1].name == "Nine points in a row on one side of the center line"
    assert rules[3].name == "Fourteen points in a row alternating up and down"
    assert rules[4].name == "Two of three points beyond 2 sigma on the same side"
    assert {r.severity for r in rules[1:]} == {"WARNING"}


@pytest.mark.parametrize("bad", [[9], [{"id": 3, "count": 1}], [{"id": 5, "count": 4, "window": 3}],
                                 [{"id": 1, "severity": "LOUD"}], [1, 1], "acme", [True]])
def test_bad_rule_configuration_is_refused_with_a_message(bad: object) -> None:
    """Unknown ids, impossible counts, unknown severities and presets are clear errors."""
    with pytest.raises(ValueError, match=r"rule|preset"):
        resolve_rules(bad)  # type: ignore[arg-type]


def test_dispersion_violation_names_its_chart() -> None:
    """A range-chart alarm says chart 'r' and is never reported as an x-bar alarm."""
    evaluator = Evaluator(ChartSpec(chart="xbar_r", subgroup_size=5, center=10.0, sigma=1.0))
    evaluation, = evaluator.add_values([4.0, 16.0, 10.0, 10.0, 10.0])
    assert [(v.chart, v.rule_id) for v in evaluation.violations] == [("r", 1)]
    assert evaluation.zone == "zone_c_upper" and evaluation.in_control is False
    mr = Evaluator(ChartSpec(chart="imr", center=0.0, sigma=1.0, rules=resolve_rules("rule1")))
    assert [v.chart for x in [2.9, -2.9] for e in mr.add_values([x]) for v in e.violations] == ["mr"]
