"""Parse a gauge's MQTT payload into a reading, or say exactly why it cannot be one.

Accepted payloads on a characteristic's topic: a bare number (``10.5``); ``{"value": 10.5}``; a
whole subgroup ``{"values": [74.03, 74.00, ...]}``; attribute counts ``{"count": 3, "n": 50}``
(``n`` optional: the nominal size). Each object may carry ``"ts"`` (ISO 8601, kept exactly as sent)
and ``"seq"`` or ``"id"`` (identifies the reading for de-duplication). Other keys are ignored.
"""

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

MAX_CLOCK_SKEW = timedelta(hours=1)  # a gauge timestamp further ahead than this is refused


class IngestError(ValueError):
    """A payload that is not a reading; the message is the reason recorded with the reject."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One accepted reading: measurements or a count, its time and its identifier."""

    values: tuple[float, ...] | None  # measurements
    single: bool                      # one value to collect into a subgroup (not a whole subgroup)
    count: int | None                 # attribute charts
    n: int | None
    ts: str                           # the gauge's timestamp as sent, or the receipt time
    time: datetime                    # ts parsed, UTC
    seq: str | None


def _reject_constant(name: str) -> float:
    raise IngestError(f"{name} is not a number")


# One decoder for every payload: json.loads with parse_constant builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IngestError(f"{what} must be a number, got {json.dumps(value)[:40]}")
    if not math.isfinite(value):
        raise IngestError(f"{what} must be finite")
    return float(value)


def _whole(value: Any, what: str) -> int:
    number = _number(value, what)
    if number != int(number):
        raise IngestError(f"{what} must be a whole number, got {number:g}")
    return int(number)


def _timestamp(value: Any, now: datetime) -> tuple[str, datetime]:
    if not isinstance(value, str):
        raise IngestError("ts must be an ISO 8601 string such as 2026-11-26T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise IngestError(f"ts {value[:40]!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise IngestError(f"ts {value[:40]!r} has no time zone (add Z or +hh:mm)")
    parsed = parsed.astimezone(timezone.utc)
    if parsed > now + MAX_CLOCK_SKEW:
        raise IngestError(f"ts {value[:40]!r} is in the future (more than {MAX_CLOCK_SKEW} ahead)")
    return value, parsed


def _seq(body: dict[str, Any]) -> str | None:
    seq = body.get("seq", body.get("id"))
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, (str, int)) or str(seq) == "":
        raise IngestError("seq/id must be a non-empty string or an integer")
    if len(str(seq)) > 200:
        raise IngestError("seq/id is longer than 200 characters")
    return str(seq)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_reading(payload: bytes, now: datetime, max_payload: int = 65536) -> Reading:
    """The reading in ``payload`` received at ``now`` (UTC), or IngestError with the reason."""
    if not payload:
        raise IngestError("empty payload")
    if len(payload) > max_payload:
        raise IngestError(f"payload of {len(payload)} bytes exceeds the limit of {max_payload}")
    try:
        body = _DECODER.decode(payload.decode(json.detect_encoding(payload), "surrogatepass"))
    except IngestError:
        raise
    except (ValueError, UnicodeDecodeError):
        raise IngestError("payload is not JSON (nor a bare number)") from None
    if not isinstance(body, dict):
        return Reading((_number(body, "a bare payload"),), True, None, None, _iso(now), now, None)
    ts, time = _timestamp(body["ts"], now) if "ts" in body else (_iso(now), now)
    seq = _seq(body)
    present = [key for key in ("value", "values", "count") if key in body]
    if len(present) != 1:
        raise IngestError('an object needs exactly one of "value", "values" or "count"')
    if "value" in body:
        return Reading((_number(body["value"], "value"),), True, None, None, ts, time, seq)
    if "values" in body:
        values = body["values"]
        if not isinstance(values, list) or not values:
            raise IngestError("values must be a non-empty list of numbers")
        numbers = tuple(_number(v, f"values[{i}]") for i, v in enumerate(values))
        return Reading(numbers, False, None, None, ts, time, seq)
    n = _whole(body["n"], "n") if body.get("n") is not None else None
    return Reading(None, False, _whole(body["count"], "count"), n, ts, time, seq)
