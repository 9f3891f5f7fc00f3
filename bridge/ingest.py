"""Parse a gauge's MQTT payload into a reading, or say exactly why it cannot be one.

Accepted payloads on a characteristic's topic: a bare number (``10.5``); ``{"value": 10.5}``; a
whole subgroup ``{"values": [74.03, 74.00, ...]}``; attribute counts ``{"count": 3, "n": 50}``
(``n`` optional: the nominal size). Each object may carry ``"ts"`` (ISO 8601, kept exactly as sent)
and ``"seq"`` or ``"id"`` (identifies the reading for de-duplication). Other keys are ignored.

Every bound is checked here, before the engine or the database sees a value (docs/design.md, "Bounds
of a reading"): nesting depth before decoding, number literals within the range of floats, measurements
within ±MAX_MAGNITUDE, counts and sample sizes within 32 bits, timestamps and identifiers within
their columns and a timestamp's instant within the years MIN_YEAR..MAX_YEAR. The decoding
(``parse_document``) and the checks of each part of a reading are public: bridge.fieldpaths reads
vendor JSON with the same bounds.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from bridge.jsondepth import deeper_than
from bridge.spc import MAX_MAGNITUDE, MAX_SUBGROUP

MAX_CLOCK_SKEW = timedelta(hours=1)  # a gauge timestamp further ahead than this is refused
MAX_DEPTH = 32          # nested arrays and objects (a reading needs 2)
MAX_DIGITS = 309        # of an integer literal: one more and it is beyond the largest float, 1.8e308
MAX_TS_CHARS = 64       # a gauge's ts, kept as sent: the size of readings.ts and samples.ts
MAX_SEQ_CHARS = 200     # seq/id: the size of readings.seq
MAX_COUNT = 2**31 - 1   # count and n are 32-bit integers (readings.n)
MIN_YEAR, MAX_YEAR = 1970, 9998  # of a timestamp in UTC (9999 leaves no room for arithmetic)


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
    stamped: bool = False             # ts came from the gauge (not the receipt time)
    numeric_seq: bool = False         # seq was sent as a JSON integer (it compares as text)

    def sent_seq(self) -> str | int | None:
        """The seq with the JSON type it was sent in."""
        return int(self.seq) if self.numeric_seq and self.seq is not None else self.seq


def _reject_constant(name: str) -> float:
    raise IngestError(f"{name} is not a number")


def _integer(literal: str) -> int:
    # Before int(): a huge literal is an OverflowError as a float and past 4,300 digits int()
    # itself refuses it (a ValueError that would read as "not JSON").
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_DIGITS:
        raise IngestError(f"a number of {digits} digits is beyond the range of numbers (±1.8e308)")
    return int(literal)


# One decoder for every payload: json.loads with parse_constant builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_integer)


def _check_number(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IngestError(f"{what} must be a number, got {json.dumps(value)[:40]}")


def measurement(value: Any, what: str) -> float:
    """``value`` as a measurement: a JSON number within ±MAX_MAGNITUDE (IngestError naming ``what``)."""
    _check_number(value, what)
    if not abs(value) <= MAX_MAGNITUDE:  # an int is compared exactly, never converted
        raise IngestError(f"{what} must be a finite number within ±{MAX_MAGNITUDE:g} "
                          f"(check the gauge's units and scaling)")
    return float(value)


def whole_number(value: Any, what: str, lowest: int) -> int:
    """``value`` as a count or sample size: a whole JSON number in ``lowest``..MAX_COUNT."""
    _check_number(value, what)
    if not lowest <= value <= MAX_COUNT:
        raise IngestError(f"{what} must be a whole number in {lowest}..{MAX_COUNT}, "
                          f"got {json.dumps(value)[:20]}")
    if value != int(value):
        raise IngestError(f"{what} must be a whole number, got {value:g}")
    return int(value)


def subgroup(values: Any, what: str) -> tuple[float, ...]:
    """``values`` as a whole subgroup: a non-empty list of at most MAX_SUBGROUP measurements."""
    if not isinstance(values, list) or not values:
        raise IngestError(f"{what} must be a non-empty list of numbers")
    if len(values) > MAX_SUBGROUP:
        raise IngestError(f"{what} holds {len(values)} measurements; a subgroup has at most "
                          f"{MAX_SUBGROUP}")
    return tuple(measurement(v, f"{what}[{i}]") for i, v in enumerate(values))


def _storable(text: str) -> bool:
    """True if every database can store ``text``: valid Unicode and no NUL (PostgreSQL refuses it)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, from a \ud800 escape
        return False
    return True


def _instant(utc: datetime | None, now: datetime, what: str, sent: Any, shown: Callable[[Any], str],
             brief: Callable[[Any], str]) -> datetime:
    """``utc`` if it is within the years MIN_YEAR..MAX_YEAR and not beyond the clock skew ahead of ``now``;
    ``shown`` and ``brief`` write the value ``sent`` into a reason, only when there is one to write (functions
    of the module, not closures: every reading passes here)."""
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise IngestError(f"{what} {shown(sent)} is outside the years {MIN_YEAR}..{MAX_YEAR} (UTC)")
    if utc > now + MAX_CLOCK_SKEW:
        raise IngestError(f"{what} {brief(sent)} is in the future (more than {MAX_CLOCK_SKEW} ahead)")
    return utc


def _repr_40(value: str) -> str:
    return repr(value[:40])


def _json_40(value: Any) -> str:
    return json.dumps(value)[:40]


def timestamp(value: Any, now: datetime, what: str = "ts") -> tuple[str, datetime]:
    """An ISO 8601 timestamp with a time zone, kept as sent, and its instant in UTC."""
    if not isinstance(value, str):
        raise IngestError(f"{what} must be an ISO 8601 string such as 2026-11-26T12:00:00Z")
    if len(value) > MAX_TS_CHARS:
        raise IngestError(f"{what} is {len(value)} characters long; at most {MAX_TS_CHARS} are kept")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise IngestError(f"{what} {value[:40]!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise IngestError(f"{what} {value[:40]!r} has no time zone (add Z or +hh:mm)")
    try:
        utc = parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        utc = None
    return value, _instant(utc, now, what, value, repr, _repr_40)


def iso_utc(moment: datetime, timespec: str = "auto") -> str:
    """A UTC instant in ISO 8601 with ``Z``: how the bridge writes a time it stamps itself."""
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECONDS = {"s": 1, "ms": 1000}
# Past this many seconds after the epoch a datetime overflows; the year bound itself is checked on the instant.
_LAST_SECOND = (datetime(MAX_YEAR + 1, 1, 1, tzinfo=timezone.utc) - _EPOCH).total_seconds()


def epoch_timestamp(value: Any, unit: Literal["s", "ms"], now: datetime, what: str) -> tuple[str, datetime]:
    """A number of seconds or milliseconds since 1970-01-01 UTC: its instant written in ISO 8601
    (``2026-12-01T12:00:00.123Z``) and the instant itself."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IngestError(f"{what} must be a number of {'seconds' if unit == 's' else 'milliseconds'} "
                          f"since 1970-01-01 UTC, got {_json_40(value)}")
    # compared before any conversion: an int is compared exactly, and NaN fails
    if not 0 <= value < _LAST_SECOND * _SECONDS[unit]:
        raise IngestError(f"{what} {_json_40(value)} is outside the years {MIN_YEAR}..{MAX_YEAR} (UTC)")
    moment = _EPOCH + (timedelta(seconds=value) if unit == "s" else timedelta(milliseconds=value))
    _instant(moment, now, what, value, _json_40, _json_40)
    return iso_utc(moment, "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"), moment


def seq_text(seq: Any, what: str = "seq/id") -> str | None:
    """A reading's identifier as text (None when it has none): a non-empty string or an integer."""
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, (str, int)) or seq == "":
        raise IngestError(f"{what} must be a non-empty string or an integer")
    text = str(seq)
    if len(text) > MAX_SEQ_CHARS:
        raise IngestError(f"{what} is longer than {MAX_SEQ_CHARS} characters")
    if not _storable(text):
        raise IngestError(f"{what} holds a NUL or an unpaired surrogate character")
    return text


def parse_document(payload: bytes, max_payload: int = 65536) -> Any:
    """The JSON document in ``payload``, decoded within every bound (size, encoding, nesting depth,
    number literals, no NaN or Infinity), or IngestError with the reason."""
    if not payload:
        raise IngestError("empty payload")
    if len(payload) > max_payload:
        raise IngestError(f"payload of {len(payload)} bytes exceeds the limit of {max_payload}")
    encoding = json.detect_encoding(payload)
    try:
        text = payload.decode(encoding, "surrogatepass")
    except UnicodeDecodeError:
        raise IngestError("payload is not JSON (nor a bare number)") from None
    utf8 = payload if encoding == "utf-8" else text.encode("utf-8", "surrogatepass")
    if deeper_than(utf8, MAX_DEPTH):
        raise IngestError(f"payload nests arrays or objects more than {MAX_DEPTH} levels deep")
    try:
        return _DECODER.decode(text)
    except IngestError:
        raise
    except ValueError:
        raise IngestError("payload is not JSON (nor a bare number)") from None


def parse_reading(payload: bytes, now: datetime, max_payload: int = 65536) -> Reading:
    """The reading in ``payload`` received at ``now`` (UTC), or IngestError with the reason."""
    body = parse_document(payload, max_payload)
    if not isinstance(body, dict):
        return Reading((measurement(body, "a bare payload"),), True, None, None, iso_utc(now), now, None)
    ts, time = timestamp(body["ts"], now) if "ts" in body else (iso_utc(now), now)
    sent_seq = body.get("seq", body.get("id"))
    seq = seq_text(sent_seq)
    numeric = isinstance(sent_seq, int)
    present = [key for key in ("value", "values", "count") if key in body]
    if len(present) != 1:
        raise IngestError('an object needs exactly one of "value", "values" or "count"')
    if "value" in body:
        return Reading((measurement(body["value"], "value"),), True, None, None, ts, time, seq, "ts" in body,
                       numeric)
    if "values" in body:
        return Reading(subgroup(body["values"], "values"), False, None, None, ts, time, seq, "ts" in body,
                       numeric)
    n = whole_number(body["n"], "n", 1) if body.get("n") is not None else None
    return Reading(None, False, whole_number(body["count"], "count", 0), n, ts, time, seq, "ts" in body,
                   numeric)
