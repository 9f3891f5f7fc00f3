"""A literal, whole-series reading of the Nelson rules: the oracle the streaming engine must match.

It shares no code with bridge/spc/rules.py: each condition is read straight off the series with
the window ending at the point, then the re-firing policy (a rule fires where one of its sides
starts holding) is applied.
"""

from typing import Sequence

from bridge.spc import Limits, RuleSpec


def _conditions(rule: RuleSpec, xs: Sequence[float], lims: Sequence[Limits], i: int) -> list[bool]:
    """Whether each side of ``rule`` holds at point ``i`` (window ending at ``i``)."""
    n = rule.span
    if i + 1 < n:
        return [False, False]
    window = range(i - n + 1, i + 1)
    d = {j: xs[j] - lims[j].center for j in window}
    up = {j: lims[j].sd_upper for j in window}
    lo = {j: lims[j].sd_lower for j in window}
    if rule.id == 1:
        return [xs[i] > lims[i].ucl, xs[i] < lims[i].lcl]
    if rule.id == 2:
        return [all(d[j] > 0 for j in window), all(d[j] < 0 for j in window)]
    if rule.id in (3, 4):
        diffs = [xs[j] - xs[j - 1] for j in list(window)[1:]]
        if rule.id == 3:
            return [all(t > 0 for t in diffs), all(t < 0 for t in diffs)]
        alternating = all(t != 0 for t in diffs) and all(
            (a > 0) != (b > 0) for a, b in zip(diffs, diffs[1:]))
        return [alternating]
    if rule.id in (5, 6):
        k = 2 if rule.id == 5 else 1
        return [sum(d[j] > k * up[j] for j in window) >= rule.count,
                sum(-d[j] > k * lo[j] for j in window) >= rule.count]
    if rule.id == 7:
        return [all(-lo[j] <= d[j] <= up[j] for j in window)]
    beyond = [d[j] > up[j] or -d[j] > lo[j] for j in window]
    return [all(beyond) and any(d[j] > up[j] for j in window)
            and any(-d[j] > lo[j] for j in window)]


def violations(
    rules: Sequence[RuleSpec], xs: Sequence[float], lims: Sequence[Limits]
) -> tuple[list[tuple[int, int]], list[bool]]:
    """(point index, rule id) of every violation, and whether any rule holds at each point."""
    fired: list[tuple[int, int]] = []
    holding_at: list[bool] = []
    previous = {r.id: [False, False] for r in rules}
    for i in range(len(xs)):
        holding = False
        for rule in rules:
            now = _conditions(rule, xs, lims, i)
            holding = holding or any(now)
            if any(c and not p for c, p in zip(now, previous[rule.id])):
                fired.append((i, rule.id))
            previous[rule.id] = now
        holding_at.append(holding)
    return fired, holding_at
