"""Micro-benchmark of the SPC engine on one core: the individuals chart with all eight rules, or
a CUSUM or EWMA chart of individuals with its default options."""

import random
import time
from typing import NamedTuple

from bridge.spc.evaluator import Evaluator
from bridge.spc.rules import PRESETS
from bridge.spc.spec import ChartSpec

# the charts bench-engine measures, each with a 25-point baseline that estimates its limits
BENCH_CHARTS: dict[str, ChartSpec] = {
    "imr": ChartSpec(chart="imr", rules=PRESETS["nelson"]),
    "cusum": ChartSpec(chart="cusum"),
    "ewma": ChartSpec(chart="ewma"),
}


class EngineBenchResult(NamedTuple):
    """How many points were evaluated, how long it took and what fired."""

    points: int
    seconds: float
    violations: int

    @property
    def rate(self) -> float:
        """Evaluations per second."""
        return self.points / self.seconds


def bench_engine(points: int = 1_000_000, seed: int = 1, chart: str = "imr") -> EngineBenchResult:
    """Feed ``points`` normal values one by one (25-point baseline, then monitoring)."""
    rng = random.Random(seed)
    values = [rng.gauss(10.0, 1.0) for _ in range(points)]
    evaluator = Evaluator(BENCH_CHARTS[chart])
    add = evaluator.add_values
    violations = 0
    start = time.perf_counter()
    for x in values:
        for evaluation in add((x,)):
            violations += len(evaluation.violations)
    return EngineBenchResult(points, time.perf_counter() - start, violations)
