"""The characteristics at run time: what evaluating each needs of its configuration, by id."""

from dataclasses import dataclass

from bridge.assemble import Assembler
from bridge.spc import ChartSpec
from bridge.store.limit_sets import LimitSetRef


@dataclass(slots=True)
class Characteristic:
    """A configured characteristic at run time: its chart, its assembler and its limits' publication."""

    id: int
    spec: ChartSpec
    assembler: Assembler
    published_limits: int = -1  # the evaluator's limits_version last put in the outbox
    limits_at: float = 0.0  # monotonic time the limits event was last put in the outbox
    limit_set: LimitSetRef | None = None  # the limit set in force (bridge.store.limit_sets)
    topic: str | None = None  # the topic routed to it (None: a Sparkplug metric's, bound at start)
    name: str = ""  # its name in the configuration


Registry = dict[int, Characteristic]
