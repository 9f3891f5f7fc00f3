"""Turn the engine's results and stored rows into the wire events of bridge.contract (JSON text)."""

import base64
from collections.abc import Mapping
from typing import Any

from pydantic_core import to_json

from bridge.contract import (
    AckEvent, CapabilityIndices, DispersionLimits, ErrorEvent, LimitSetId, LimitsEvent,
)
from bridge.spc import ChartSpec, Evaluator
from bridge.store.limit_sets import LimitSetRef

# the name of the dispersion statistic in a sample event, by dispersion chart
_SPREAD_FIELD = {"mr": "mr", "r": "range", "s": "s"}
ERROR_PAYLOAD_CHARS = 256


def _json(fields: Mapping[str, object]) -> str:
    # pydantic-core's own serializer on a plain dict: the bytes model_dump_json writes (floats,
    # escapes, NaN and infinity as null), without building and validating a model per event.
    # The hot events take this path; tests/test_events.py checks them against their models.
    return to_json(fields, inf_nan_mode="null").decode()


def sample_event(sample_id: int, row: Mapping[str, Any], spec: ChartSpec, seq: str | int | None) -> str:
    """``spc/<id>/sample`` for a sample as stored (a row of the samples table); the JSON of
    :class:`SampleEvent` with the fields that apply, in its field order."""
    fields: dict[str, object] = {
        "sample_id": int(sample_id), "characteristic_id": int(row["characteristic_id"]),
        "timestamp": row["ts"], "value": float(row["value"]), "zone": row["zone"],
        "in_control": row["in_control"], "n": int(row["n"]),
    }
    dispersion = spec.type.dispersion
    if dispersion is not None and row["spread"] is not None:
        fields[_SPREAD_FIELD[dispersion]] = float(row["spread"])
    ewma = row.get("ewma")
    if row["ucl"] is not None and (row["n"] != spec.subgroup_size or ewma is not None):
        fields["ucl"], fields["lcl"] = float(row["ucl"]), float(row["lcl"])
    if row.get("cusum_upper") is not None:
        fields["cusum_upper"] = float(row["cusum_upper"])
        fields["cusum_lower"] = float(row["cusum_lower"])
    if ewma is not None:
        fields["ewma"] = float(ewma)
    if seq is not None:
        fields["seq"] = seq
    return _json(fields)


def violation_event(violation_id: int, row: Mapping[str, Any]) -> str:
    """``spc/<id>/violation`` for a violation as stored: the JSON of :class:`ViolationEvent`."""
    return _json({
        "violation_id": int(violation_id), "characteristic_id": int(row["characteristic_id"]),
        "sample_id": int(row["sample_id"]), "rule_id": int(row["rule_id"]),
        "rule_name": row["rule_name"], "severity": row["severity"], "chart": row["chart"],
    })


def ack_event(row: Mapping[str, Any]) -> str:
    """``spc/<id>/ack`` (the seed's ``ack_update``) for a violation row after acknowledgement."""
    return AckEvent(
        violation_id=row["id"], characteristic_id=row["characteristic_id"],
        acknowledged=row["acknowledged"], ack_user=row["ack_user"], ack_reason=row["ack_reason"],
        ack_time=row["ack_time"], reason_code=row["reason_code"], assignable_cause=bool(row["assignable_cause"]),
    ).model_dump_json()


def limits_event(characteristic_id: int, evaluator: Evaluator, limit_set: LimitSetRef | None = None,
                 name: str | None = None) -> str:
    """``spc/<id>/limits`` as JSON text (:func:`limits_model`)."""
    return limits_model(characteristic_id, evaluator, limit_set, name).model_dump_json()


def limits_model(characteristic_id: int, evaluator: Evaluator, limit_set: LimitSetRef | None = None,
                 name: str | None = None) -> LimitsEvent:
    """``spc/<id>/limits``: the current limits at the nominal n (nulls during the baseline).

    ``sigma`` is the 1-sigma zone width of the plotted statistic at the nominal n (above the
    centre line where the limits are asymmetric; a CUSUM's sigma of x, an EWMA's asymptotic sigma
    of z). ``reason`` says why a baseline gave no limits; ``statistic`` what to plot; ``limit_set``
    which limit set this is, and ``effective_from`` its first sample; ``name`` the characteristic's.
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
        characteristic_id=characteristic_id, name=name,
        chart=spec.type.primary, phase=evaluator.phase,  # type: ignore[arg-type]
        center=center, ucl=ucl, lcl=lcl, sigma=sigma, n=spec.subgroup_size,
        dispersion=dispersion, capability=capability, reason=evaluator.baseline_error,
        statistic=spec.memory.statistic if spec.memory is not None else "value",  # type: ignore[arg-type]
        limit_set=LimitSetId(id=limit_set.id, version=limit_set.version) if limit_set is not None else None,
        effective_from=limit_set.effective_from if limit_set is not None else None,
    )


def payload_text(payload: bytes, chars: int) -> str:
    """The start of a payload as at most ``chars`` characters of text: as it is when it is UTF-8 without
    NUL (which PostgreSQL's text refuses), else ``base64:`` and the base64 of its first bytes (protobuf)."""
    text = payload[:chars * 4].decode("utf-8", "replace")
    if "\ufffd" not in text and "\x00" not in text:
        return text[:chars]
    return ("base64:" + base64.b64encode(payload[:(chars - 7) * 3 // 4]).decode())[:chars]


def error_event(topic: str, reason: str, payload: bytes, received_at: str) -> str:
    """``spc/bridge/errors``: a rejected input with the start of its payload (bridge.service.events.payload_text)."""
    text = payload_text(payload, ERROR_PAYLOAD_CHARS)
    return ErrorEvent(topic=topic, reason=reason, payload=text,
                      received_at=received_at).model_dump_json()
