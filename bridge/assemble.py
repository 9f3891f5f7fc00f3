"""One characteristic at run time: collect readings into samples and feed them to its chart.

Single values for a subgrouped chart are collected until ``subgroup_size`` of them form a
subgroup (its time is the last value's); the collected values are part of the saved state, so they
survive a restart. A whole subgroup that arrives while single values are being collected first
closes those values as a short subgroup (judged against limits for its own n), keeping the
order in which the gauge measured.
"""

from dataclasses import dataclass
from typing import Any

from bridge.ingest import IngestError, Reading
from bridge.spc import ChartSpec, Evaluation, Evaluator, SampleError


@dataclass(slots=True)
class Sample:
    """A complete sample and the engine's verdicts it produced (earlier baseline samples too)."""

    idx: int
    ts: str
    evaluations: list[Evaluation]
    whole: bool  # made from one reading alone (not single values collected together)


@dataclass(slots=True)
class Accepted:
    """What one reading did: the sample it belongs to and the samples it completed."""

    sample_idx: int
    completed: list[Sample]


class Assembler:
    """A characteristic's evaluator plus the single values waiting for their subgroup."""

    __slots__ = ("spec", "evaluator", "pending")

    def __init__(self, spec: ChartSpec, state: dict[str, Any] | None = None,
                 pending: list[list[Any]] | None = None) -> None:
        self.spec = spec
        self.evaluator = Evaluator(spec, state)
        self.pending: list[list[Any]] = pending or []  # [value, ts] of collected single values

    def accept(self, reading: Reading) -> Accepted:
        """Take one reading; IngestError (with the reason) if the chart cannot use it."""
        evaluator = self.evaluator
        try:
            if reading.count is not None:
                n = evaluator.check_count(reading.count, reading.n)
                count = reading.count
                return self._one(reading.ts, lambda: evaluator.add_count(count, n))
            values = reading.values or ()
            evaluator.check_values(values)
        except SampleError as error:
            raise IngestError(str(error)) from None
        if reading.single and self.spec.subgroup_size > 1:
            self.pending.append([values[0], reading.ts])
            if len(self.pending) < self.spec.subgroup_size:
                return Accepted(evaluator.count, [])
            return self._one(reading.ts, self._flush, whole=False)
        completed = [self._sample(self.pending[-1][1], self._flush, False)] if self.pending else []
        accepted = self._one(reading.ts, lambda: evaluator.add_values(values))
        accepted.completed[:0] = completed
        return accepted

    def _flush(self) -> list[Evaluation]:
        values = [v for v, _ in self.pending]
        self.pending = []
        return self.evaluator.add_values(values)

    def _one(self, ts: str, add: Any, whole: bool = True) -> Accepted:
        sample = self._sample(ts, add, whole)
        return Accepted(sample.idx, [sample])

    def _sample(self, ts: str, add: Any, whole: bool) -> Sample:
        return Sample(self.evaluator.count, ts, add(), whole)
