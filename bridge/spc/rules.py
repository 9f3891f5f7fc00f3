"""The eight Nelson rules (Nelson 1984) as one small streaming state machine per chart.

Definitions (the windows used by Minitab, JMP and qcc):
  1 one point beyond the control limits (3 sigma);
  2 ``count`` (9) points in a row on one side of the centre line (a point on it breaks the run);
  3 ``count`` (6) points in a row steadily increasing or decreasing (an equal pair breaks it);
  4 ``count`` (14) points in a row alternating up and down (an equal pair breaks it);
  5 ``count`` (2) of ``window`` (3) points beyond 2 sigma on the same side;
  6 ``count`` (4) of ``window`` (5) points beyond 1 sigma on the same side;
  7 ``count`` (15) points in a row within 1 sigma of the centre line (inclusive);
  8 ``count`` (8) points in a row beyond 1 sigma with points on both sides.
"Beyond k sigma" is strict; a point beyond 3 sigma also counts as beyond 2 and 1 sigma.
No rule fires before its window is full.

Re-firing policy (the alarm-management convention of ISA-18.2: annunciate on the transition to
the abnormal state): a rule raises a violation at the point where its condition starts to hold
and not again while it keeps holding; it may fire again once it has stopped holding for at least
one point. The two sides of a rule (above/below, increasing/decreasing) are separate conditions,
so a run that jumps to the other side is a new violation. Every point at which any enabled rule
holds is out of control, whether or not it raised the violation.

History is kept as bit masks (bit 0 = newest point), so one step costs the same whatever the
length of the series, and the whole state is a handful of integers.
"""

import functools
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

CRITICAL = "CRITICAL"
WARNING = "WARNING"
INFO = "INFO"
SEVERITIES = (CRITICAL, WARNING, INFO)

MAX_WINDOW = 50

_WORDS = (
    "Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten",
    "Eleven", "Twelve", "Thirteen", "Fourteen", "Fifteen", "Sixteen", "Seventeen",
    "Eighteen", "Nineteen", "Twenty",
)

# rule id -> (default count, default window or None, name template)
_RULES: dict[int, tuple[int, int | None, str]] = {
    1: (1, None, "One point beyond 3 sigma"),
    2: (9, None, "{count} points in a row on one side of the center line"),
    3: (6, None, "{count} points in a row steadily increasing or decreasing"),
    4: (14, None, "{count} points in a row alternating up and down"),
    5: (2, 3, "{count} of {window} points beyond 2 sigma on the same side"),
    6: (4, 5, "{count} of {window} points beyond 1 sigma on the same side"),
    7: (15, None, "{count} points in a row within 1 sigma"),
    8: (8, None, "{count} points in a row beyond 1 sigma on both sides"),
}
RULE_IDS = tuple(_RULES)


def _word(k: int) -> str:
    return _WORDS[k] if k < len(_WORDS) else str(k)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One enabled rule: its id, point count, window (rules 5 and 6) and severity."""

    id: int
    count: int
    window: int | None
    severity: str

    @property
    def name(self) -> str:
        """Human-readable name in the seed's style, e.g. 'One point beyond 3 sigma'."""
        template = _RULES[self.id][2]
        word = _word(self.count)
        window = _word(self.window).lower() if self.window else ""
        return template.format(count=word, window=window)

    @classmethod
    def default(cls, rule_id: int, **changes: object) -> "RuleSpec":
        """The rule with Nelson's defaults, optionally changed (count, window, severity)."""
        if rule_id not in _RULES:
            raise ValueError(f"unknown rule {rule_id!r}: rules are numbered 1 to 8")
        count, window, _ = _RULES[rule_id]
        values: dict[str, object] = {
            "count": count, "window": window, "severity": CRITICAL if rule_id == 1 else WARNING,
        }
        unknown = set(changes) - set(values)
        if unknown:
            raise ValueError(f"rule {rule_id}: unknown option(s) {sorted(unknown)}")
        values.update(changes)
        spec = cls(rule_id, values["count"], values["window"], values["severity"])  # type: ignore[arg-type]
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise ValueError when the counts or severity cannot work."""
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.id}: severity must be one of {SEVERITIES}")
        if not isinstance(self.count, int) or isinstance(self.count, bool):
            raise ValueError(f"rule {self.id}: count must be an integer")
        if self.id == 1:
            if self.count != 1:
                raise ValueError("rule 1 looks at one point; its count cannot change")
        elif self.window is not None:
            if not (1 <= self.count <= self.window <= MAX_WINDOW):
                raise ValueError(f"rule {self.id}: need 1 <= count <= window <= {MAX_WINDOW}")
        elif not 2 <= self.count <= MAX_WINDOW:
            raise ValueError(f"rule {self.id}: count must be 2..{MAX_WINDOW}")

    @property
    def span(self) -> int:
        """Number of points the rule's window covers."""
        return self.window or self.count


PRESETS: Mapping[str, tuple[RuleSpec, ...]] = {
    "nelson": tuple(RuleSpec.default(i) for i in RULE_IDS),
    "western_electric": (
        RuleSpec.default(1), RuleSpec.default(2, count=8),
        RuleSpec.default(5), RuleSpec.default(6),
    ),
    "rule1": (RuleSpec.default(1),),
}


def resolve_rules(selection: str | Sequence[int | Mapping[str, object]]) -> tuple[RuleSpec, ...]:
    """Turn a preset name or a list of rule ids / ``{id, count, window, severity}`` into specs."""
    if isinstance(selection, str):
        try:
            return PRESETS[selection]
        except KeyError:
            raise ValueError(
                f"unknown rule preset {selection!r}: choose one of {sorted(PRESETS)}"
            ) from None
    specs: dict[int, RuleSpec] = {}
    for item in selection:
        if isinstance(item, Mapping):
            options = dict(item)
            rule_id = options.pop("id", None)
            spec = RuleSpec.default(rule_id, **options)  # type: ignore[arg-type]
        elif isinstance(item, int) and not isinstance(item, bool):
            spec = RuleSpec.default(item)
        else:
            raise ValueError(f"a rule is an id 1..8 or a table with an 'id', got {item!r}")
        if spec.id in specs:
            raise ValueError(f"rule {spec.id} is listed twice")
        specs[spec.id] = spec
    return tuple(sorted(specs.values(), key=lambda s: s.id))


# Condition bits: each side of a rule is its own condition for the re-firing policy.
_BIT_RULE = (1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6, 7, 8)
_RULE_BITS = {r: sum(1 << b for b, rr in enumerate(_BIT_RULE) if rr == r) for r in RULE_IDS}


def _ones(k: int) -> int:
    return (1 << k) - 1


@dataclass(frozen=True, slots=True)
class _Masks:
    """The bit masks and counts of one set of rules, shared by every tracker of that set."""

    enabled: int
    full: int
    m2: int
    m3: int
    m4: int
    alt: int
    w5: int
    k5: int
    n5: int
    w6: int
    k6: int
    n6: int
    m7: int
    n7: int
    m8: int


@functools.lru_cache(maxsize=256)
def _masks(rules: tuple[RuleSpec, ...]) -> _Masks:
    by_id = {r.id: r for r in rules}
    enabled = 0
    for r in by_id.values():
        enabled |= _RULE_BITS[r.id]

    def count(rule_id: int) -> int:
        return by_id[rule_id].count if rule_id in by_id else _RULES[rule_id][0]

    m2, m7, m8 = _ones(count(2)), _ones(count(7)), _ones(count(8))
    m4 = _ones(count(4) - 1)
    r5 = by_id.get(5, RuleSpec.default(5))
    r6 = by_id.get(6, RuleSpec.default(6))
    w5, w6 = _ones(r5.span), _ones(r6.span)
    full = max(_ones(max([r.span for r in by_id.values()] or [1])), m2, m7, m8, w5, w6)
    return _Masks(enabled, full, m2, _ones(count(3) - 1), m4, int("01" * MAX_WINDOW, 2) & m4,
                  w5, r5.count, r5.span, w6, r6.count, r6.span, m7, count(7), m8)


class RuleTracker:
    """Streaming evaluation of a set of rules over the points of one chart."""

    # One per chart of every characteristic: only the history is its own, the masks are shared.
    __slots__ = (
        "_masks", "seen", "prev", "above", "below", "inc", "dec", "up1", "dn1", "up2", "dn2",
        "holding",
    )

    def __init__(self, rules: Iterable[RuleSpec]) -> None:
        self._masks = _masks(tuple(rules))
        self.reset()

    def reset(self) -> None:
        """Forget the history (used when the limits change)."""
        self.seen = 0
        self.prev = 0.0
        self.above = self.below = self.inc = self.dec = 0
        self.up1 = self.dn1 = self.up2 = self.dn2 = 0
        self.holding = 0

    def step(
        self, x: float, center: float, ucl: float, lcl: float, sd_upper: float, sd_lower: float
    ) -> tuple[int, tuple[int, ...]]:
        """Add one point; return (mask of conditions holding, ids of rules that fire now)."""
        masks = self._masks
        full = masks.full
        d = x - center
        seen = self.seen
        self.above = a = ((self.above << 1) | (d > 0.0)) & full
        self.below = b = ((self.below << 1) | (d < 0.0)) & full
        self.up1 = u1 = ((self.up1 << 1) | (d > sd_upper)) & full
        self.dn1 = d1 = ((self.dn1 << 1) | (-d > sd_lower)) & full
        self.up2 = u2 = ((self.up2 << 1) | (d > 2.0 * sd_upper)) & full
        self.dn2 = d2 = ((self.dn2 << 1) | (-d > 2.0 * sd_lower)) & full
        prev = self.prev
        self.inc = i = ((self.inc << 1) | (seen > 0 and x > prev)) & full
        self.dec = dd = ((self.dec << 1) | (seen > 0 and x < prev)) & full
        self.prev = x
        self.seen = seen = seen + 1

        h = 0
        if x > ucl:
            h = 1
        elif x < lcl:
            h = 2
        m = masks.m2
        if a & m == m:
            h |= 4
        elif b & m == m:
            h |= 8
        m = masks.m3
        if i & m == m:
            h |= 16
        elif dd & m == m:
            h |= 32
        m = masks.m4
        if (i | dd) & m == m and (i & m == masks.alt or i & m == masks.alt ^ m):
            h |= 64
        if seen >= masks.n5:
            w = masks.w5
            if (u2 & w).bit_count() >= masks.k5:
                h |= 128
            if (d2 & w).bit_count() >= masks.k5:
                h |= 256
        if seen >= masks.n6:
            w = masks.w6
            if (u1 & w).bit_count() >= masks.k6:
                h |= 512
            if (d1 & w).bit_count() >= masks.k6:
                h |= 1024
        m = masks.m7
        if seen >= masks.n7 and not (u1 | d1) & m:
            h |= 2048
        m = masks.m8
        if (u1 | d1) & m == m and u1 & m and d1 & m:
            h |= 4096

        h &= masks.enabled
        rising = h & ~self.holding
        self.holding = h
        if not rising:
            return h, ()
        fired: list[int] = []
        for bit, rule_id in enumerate(_BIT_RULE):
            if rising >> bit & 1 and rule_id not in fired:
                fired.append(rule_id)
        return h, tuple(fired)

    def state(self) -> list[float]:
        """The tracker's history as a JSON-serialisable list."""
        return [
            self.seen, self.prev, self.above, self.below, self.inc, self.dec,
            self.up1, self.dn1, self.up2, self.dn2, self.holding,
        ]

    def restore(self, state: Sequence[float]) -> None:
        """Load a history saved by :meth:`state`."""
        (self.seen, self.prev, self.above, self.below, self.inc, self.dec,
         self.up1, self.dn1, self.up2, self.dn2, self.holding) = state  # type: ignore[assignment]
        self.seen = int(self.seen)
        self.prev = float(self.prev)
