"""Turn the engine's results into the wire events of bridge.contract (JSON text)."""

from bridge.contract import (
    CapabilityIndices, DispersionLimits, ErrorEvent, LimitsEvent, SampleEvent, ViolationEvent,
)
from bridge.spc import Evaluation, Evaluator, Violation

# the name of the dispersion statistic in a sample event, by dispersion chart
_SPREAD_FIELD = {"mr": "mr", "r": "range", "s": "s"}
ERROR_PAYLOAD_CHARS = 256


def sample_event(sample_id: int, characteristic_id: int, ts: str, evaluation: Evaluation,
                 evaluator: Evaluator, seq: str | None) -> str:
    """``spc/<id>/sample`` for one evaluated sample."""
    fields: dict[str, object] = {
        "sample_id": sample_id, "characteristic_id": characteristic_id, "timestamp": ts,
        "value": evaluation.value, "zone": evaluation.zone, "in_control": evaluation.in_control,
        "n": evaluation.n,
    }
    dispersion = evaluator.spec.type.dispersion
    if dispersion is not None and evaluation.spread is not None:
        fields[_SPREAD_FIELD[dispersion]] = evaluation.spread
    limits = evaluation.limits
    if limits is not None and evaluation.n != evaluator.spec.subgroup_size:
        fields["ucl"], fields["lcl"] = limits.ucl, limits.lcl
    if seq is not None:
        fields["seq"] = seq
    return SampleEvent(**fields).model_dump_json(exclude_unset=True)  # type: ignore[arg-type]


def violation_event(violation_id: int, characteristic_id: int, sample_id: int,
                    violation: Violation) -> str:
    """``spc/<id>/violation`` for one rule that fired."""
    return ViolationEvent(
        violation_id=violation_id, characteristic_id=characteristic_id, sample_id=sample_id,
        rule_id=violation.rule_id, rule_name=violation.rule_name, severity=violation.severity,
        chart=violation.chart,
    ).model_dump_json()


def limits_event(characteristic_id: int, evaluator: Evaluator) -> str:
    """``spc/<id>/limits``: the current limits at the nominal n (nulls during the baseline).

    ``sigma`` is the 1-sigma zone width of the plotted statistic at the nominal n (above the
    centre line where the limits are asymmetric).
    """
    spec = evaluator.spec
    limits = evaluator.limits()
    dispersion = capability = None
    if limits is None:
        center = ucl = lcl = sigma = None
    else:
        primary, spread = limits
        center, ucl, lcl, sigma = primary.center, primary.ucl, primary.lcl, primary.sd_upper
        if spread is not None and spec.type.dispersion is not None:
            dispersion = DispersionLimits(chart=spec.type.dispersion, center=spread.center,
                                          ucl=spread.ucl, lcl=spread.lcl)
    indices = evaluator.capability()
    if indices is not None:
        capability = CapabilityIndices(cp=indices.cp, cpk=indices.cpk, pp=indices.pp,
                                       ppk=indices.ppk, usl=spec.usl, lsl=spec.lsl)
    return LimitsEvent(
        characteristic_id=characteristic_id, chart=spec.type.primary, phase=evaluator.phase,  # type: ignore[arg-type]
        center=center, ucl=ucl, lcl=lcl, sigma=sigma, n=spec.subgroup_size,
        dispersion=dispersion, capability=capability,
    ).model_dump_json()


def error_event(topic: str, reason: str, payload: bytes, received_at: str) -> str:
    """``spc/bridge/errors``: a rejected input with the start of its payload."""
    text = payload[:ERROR_PAYLOAD_CHARS * 4].decode("utf-8", "replace")[:ERROR_PAYLOAD_CHARS]
    return ErrorEvent(topic=topic, reason=reason, payload=text,
                      received_at=received_at).model_dump_json()
