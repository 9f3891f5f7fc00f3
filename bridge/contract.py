"""The public MQTT contract: every topic name and every wire payload, spelled only here.

Field names are those of the OpenSPC WebSocket seed (``sample_id``, ``characteristic_id``, ``zone``,
``in_control``, ``violation_id``, ``rule_id``, ``rule_name``, ``severity``, ``ack_user``,
``ack_reason``, ...). Events are JSON, published at QoS 1 after the data they describe is committed.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

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

# Bounds of a request, checked before it costs the bridge anything (docs/design.md, "Bounds").
MAX_REQUEST_BYTES = 16 * 1024    # the whole payload
MAX_REQUEST_DEPTH = 8            # nested arrays and objects (a request needs 2)
MAX_COMMAND_CHARS = 64           # the <command> of the topic
MAX_TRANSACTION_CHARS = 200      # a string transaction; an integer one is a 64-bit integer
MAX_ACK_IDS = 1000               # violations acknowledged by one request
MAX_HISTORY = 1000               # samples and violations in one history answer
MAX_REASON_CHARS = 1000          # an acknowledgement's reason
MAX_RESPONSE_BYTES = 1024 * 1024  # one answer; a larger history asks for a smaller limit
INT64 = 2**63 - 1                # database ids are 64-bit


def request_topic(user: str, command: str) -> str:
    """Where ``user`` sends ``command`` to the bridge."""
    return f"{REQUEST_ROOT}/{user}/{command}"


def response_topic(user: str, command: str) -> str:
    """Where the bridge answers ``user``'s ``command``."""
    return f"{RESPONSE_ROOT}/{user}/{command}"


ANY_CHARACTERISTIC: Literal["+"] = "+"  # in place of an id: a topic filter for every characteristic
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


def is_ack_topic(topic: str) -> bool:
    """True for the topic of a characteristic's acknowledgements, spc/<id>/ack."""
    parts = topic.split("/")
    return len(parts) == 3 and parts[1].isdigit() and topic == ack_topic(int(parts[1]))


def limits_topic(characteristic_id: CharacteristicRef) -> str:
    """Where a characteristic's current limits are retained."""
    return f"{ROOT}/{characteristic_id}/limits"


def status_topic(characteristic_id: CharacteristicRef) -> str:
    """Where a characteristic's status is retained (whether its source is live)."""
    return f"{ROOT}/{characteristic_id}/status"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleEvent(_Event):
    """``spc/<id>/sample``: one evaluated sample (zone and in_control null during the baseline).

    A CUSUM chart's samples carry ``cusum_upper`` and ``cusum_lower`` (C+ and C-, >= 0, data
    units); an EWMA chart's carry ``ewma`` (z) and that point's exact ``ucl``/``lcl``.
    """

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
    cusum_upper: float | None = None
    cusum_lower: float | None = None
    ewma: float | None = None
    seq: str | int | None = None  # as the gauge sent it: a JSON integer stays an integer


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
    """``spc/<id>/limits`` (retained): the current limits; all null while in the baseline.

    ``reason``, in the baseline only: why the last baseline gave no limits (they would not be
    finite numbers) and where the new one starts; null otherwise.
    ``statistic`` says what a dashboard plots against the limits: the sample's ``value``, its
    ``cusum_upper`` and ``-cusum_lower`` (limits +H and -H around 0), or its ``ewma``.
    """

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
    reason: str | None = None
    statistic: Literal["value", "cusum", "ewma"] = "value"


class StatusEvent(_Event):
    """``spc/<id>/status`` (retained): whether the characteristic's source is live.

    ``stale`` turns true when its Sparkplug edge node or device dies (NDEATH, DDEATH) or the
    bridge's Sparkplug connection is lost, with ``stale_reason``; a new birth makes it false.
    """

    characteristic_id: int
    stale: bool
    stale_reason: str | None
    timestamp: str


class ErrorEvent(_Event):
    """``spc/bridge/errors``: a rejected input, after it was recorded."""

    topic: str
    reason: str
    payload: str
    received_at: str


ViolationId = Annotated[StrictInt, Field(ge=1, le=INT64)]
Transaction = (Annotated[StrictStr, Field(max_length=MAX_TRANSACTION_CHARS)]
               | Annotated[StrictInt, Field(ge=-INT64 - 1, le=INT64)])


class AckRequest(BaseModel):
    """``spc/bridge/request/<user>/ack``: acknowledge one or several violations, with a reason."""

    model_config = ConfigDict(extra="forbid")

    violation_id: ViolationId | None = None
    violation_ids: list[ViolationId] | None = Field(None, max_length=MAX_ACK_IDS)
    reason: str
    transaction: Transaction | None = None


class HistoryRequest(BaseModel):
    """``spc/bridge/request/<user>/history``: the last samples and violations of a characteristic."""

    model_config = ConfigDict(extra="forbid")

    characteristic_id: int
    limit: int = 100
    transaction: Transaction | None = None


class CommandResponse(_Event):
    """``spc/bridge/response/<user>/<command>``: ``ok`` with data, ``error`` with the reason, or
    ``busy`` (over the user's budget or the batch's share: not carried out, ask again later)."""

    status: Literal["ok", "error", "busy"]
    data: dict[str, Any] = {}
    error: str | None = None
    transaction: str | int | None = None
