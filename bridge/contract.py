"""The public MQTT contract: every topic name and every wire payload, spelled only here.

Field names are those of the OpenSPC WebSocket seed (``sample_id``, ``characteristic_id``, ``zone``,
``in_control``, ``violation_id``, ``rule_id``, ``rule_name``, ``severity``, ``ack_user``,
``ack_reason``, ...). Events are JSON, published at QoS 1 after the data they describe is committed.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

ROOT = "spc"
STATE_TOPIC = f"{ROOT}/bridge/state"
ERRORS_TOPIC = f"{ROOT}/bridge/errors"
ONLINE = "online"
OFFLINE = "offline"
EVENT_QOS = 1


# Commands, as zigbee2mqtt's request/response topics: a client publishes a request on
# spc/bridge/request/<its user name>/<command> (the broker's ACL lets it use its own name only,
# so the bridge knows who is asking) and the answer comes on spc/bridge/response/<user>/<command>,
# which only that user may read. It works on MQTT 3.1.1 and 5 alike.
REQUEST_ROOT = f"{ROOT}/bridge/request"
RESPONSE_ROOT = f"{ROOT}/bridge/response"
REQUEST_FILTER = f"{REQUEST_ROOT}/+/+"
ACK_COMMAND = "ack"
HISTORY_COMMAND = "history"
COMMANDS = (ACK_COMMAND, HISTORY_COMMAND)


def request_topic(user: str, command: str) -> str:
    """Where ``user`` sends ``command`` to the bridge."""
    return f"{REQUEST_ROOT}/{user}/{command}"


def response_topic(user: str, command: str) -> str:
    """Where the bridge answers ``user``'s ``command``."""
    return f"{RESPONSE_ROOT}/{user}/{command}"


ANY_CHARACTERISTIC = "+"  # in place of an id: a topic filter for every characteristic
CharacteristicRef = int | Literal["+"]


def sample_topic(characteristic_id: CharacteristicRef) -> str:
    """Where a characteristic's evaluated samples are published."""
    return f"{ROOT}/{characteristic_id}/sample"


def violation_topic(characteristic_id: CharacteristicRef) -> str:
    """Where a characteristic's rule violations are published."""
    return f"{ROOT}/{characteristic_id}/violation"


def ack_topic(characteristic_id: CharacteristicRef) -> str:
    """Where acknowledgements of a characteristic's violations are published."""
    return f"{ROOT}/{characteristic_id}/ack"


def limits_topic(characteristic_id: CharacteristicRef) -> str:
    """Where a characteristic's current limits are retained."""
    return f"{ROOT}/{characteristic_id}/limits"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleEvent(_Event):
    """``spc/<id>/sample``: one evaluated sample (zone and in_control null during the baseline)."""

    sample_id: int
    characteristic_id: int
    timestamp: str
    value: float
    zone: str | None
    in_control: bool | None
    n: int
    range: float | None = None
    mr: float | None = None
    s: float | None = None
    ucl: float | None = None
    lcl: float | None = None
    seq: str | None = None


class ViolationEvent(_Event):
    """``spc/<id>/violation``: a Nelson rule that fired at a sample, on one chart."""

    violation_id: int
    characteristic_id: int
    sample_id: int
    rule_id: int
    rule_name: str
    severity: str
    chart: str


class AckEvent(_Event):
    """``spc/<id>/ack``: a violation was acknowledged (the seed's ``ack_update``)."""

    violation_id: int
    characteristic_id: int
    acknowledged: bool
    ack_user: str | None
    ack_reason: str | None
    ack_time: str | None


class DispersionLimits(_Event):
    """The limits of the dispersion chart (MR, R or S) at the nominal subgroup size."""

    chart: str
    center: float
    ucl: float
    lcl: float


class CapabilityIndices(_Event):
    """Cp, Cpk (within sigma) and Pp, Ppk (overall sigma); null where undefined."""

    cp: float | None
    cpk: float | None
    pp: float | None
    ppk: float | None
    usl: float | None
    lsl: float | None


class LimitsEvent(_Event):
    """``spc/<id>/limits`` (retained): the current limits; all null while in the baseline."""

    characteristic_id: int
    chart: str
    phase: Literal["baseline", "monitoring"]
    center: float | None
    ucl: float | None
    lcl: float | None
    sigma: float | None
    n: int
    dispersion: DispersionLimits | None = None
    capability: CapabilityIndices | None = None


class ErrorEvent(_Event):
    """``spc/bridge/errors``: a rejected input, after it was recorded."""

    topic: str
    reason: str
    payload: str
    received_at: str


class AckRequest(BaseModel):
    """``spc/bridge/request/<user>/ack``: acknowledge one or several violations, with a reason."""

    model_config = ConfigDict(extra="forbid")

    violation_id: int | None = None
    violation_ids: list[int] | None = None
    reason: str
    transaction: str | int | None = None


class HistoryRequest(BaseModel):
    """``spc/bridge/request/<user>/history``: the last samples and violations of a characteristic."""

    model_config = ConfigDict(extra="forbid")

    characteristic_id: int
    limit: int = 100
    transaction: str | int | None = None


class CommandResponse(_Event):
    """``spc/bridge/response/<user>/<command>``: ``ok`` with data, or ``error`` with the reason."""

    status: Literal["ok", "error"]
    data: dict[str, Any] = {}
    error: str | None = None
    transaction: str | int | None = None
