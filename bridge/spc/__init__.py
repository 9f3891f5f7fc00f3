"""The SPC engine: control charts, zones, Nelson rules and capability, with no I/O."""

from bridge.spc.capability import Capability
from bridge.spc.charts import CHART_TYPES, SampleError
from bridge.spc.constants import MAX_MAGNITUDE, MAX_SUBGROUP
from bridge.spc.evaluator import BASELINE, MONITORING, Evaluation, Evaluator, Limits, Params, Violation
from bridge.spc.rules import PRESETS, RuleSpec, resolve_rules
from bridge.spc.spec import ChartSpec
from bridge.spc.zones import ZONES

__all__ = [
    "BASELINE", "CHART_TYPES", "MAX_MAGNITUDE", "MAX_SUBGROUP", "MONITORING", "PRESETS", "ZONES",
    "Capability", "ChartSpec", "Evaluation", "Evaluator", "Limits", "Params", "RuleSpec",
    "SampleError", "Violation", "resolve_rules",
]
