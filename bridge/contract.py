"""The public MQTT contract: every topic name and every wire payload, spelled only here.

Field names are those of the OpenSPC WebSocket seed (``sample_id``, ``characteristic_id``, ``zone``,
``in_control``, ``violation_id``, ``rule_id``, ``rule_name``, ``severity``, ``ack_user``,
``ack_reason``, ...). Events are JSON, published at QoS 1 after the data they describe is committed.
"""

import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

ROOT = "spc"
STATE_TOPIC = f"{ROOT}/bridge/state"
ERRORS_TOPIC = f"{ROOT}/bridge/errors"
ONLINE: Final = "online"
OFFLINE: Final = "offline"
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
# The SPC workflow's commands, for engineers only (broker.roles, bridge.service.workflow).
CHARACTERISTIC_COMMAND = "characteristic"
RECALCULATE_COMMAND = "recalculate"
START_BASELINE_COMMAND = "start_baseline"
SET_LIMITS_COMMAND = "set_limits"
RULES_COMMAND = "rules"
OPERATOR_COMMANDS = (ACK_COMMAND, HISTORY_COMMAND)
ENGINEER_COMMANDS = (CHARACTERISTIC_COMMAND, RECALCULATE_COMMAND, START_BASELINE_COMMAND, SET_LIMITS_COMMAND,
                     RULES_COMMAND)
COMMANDS = (*OPERATOR_COMMANDS, *ENGINEER_COMMANDS)

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
MAX_EXCLUDED = 10_000            # samples excluded by one recalculate

# Why a violation happened, required with every acknowledgement; the file's reason_codes replace these.
DEFAULT_REASON_CODES = ("tool_wear", "material", "measurement_error", "operator", "method", "machine",
                        "environment", "unknown")
REASON_CODE = re.compile(r"[a-z0-9_]{1,64}")

# The violation of a characteristic with expected_interval whose next reading is overdue: outside the
# Nelson rules' 1-8 and the memory charts' own ids.
MISSED_SAMPLE_RULE_ID = 100
MISSED_SAMPLE_RULE_NAME = "Missed sample"
MISSED_SAMPLE_SEVERITY = "WARNING"


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


INSTANCE_FILTER = f"{STATE_TOPIC}/#"  # every instance_topic (and spc/bridge/state itself)


def instance_topic(client_id: str) -> str:
    """Where the instance serving a logical bridge (or partition) ``client_id`` says so, retained."""
    return f"{STATE_TOPIC}/{client_id}"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceState(_Event):
    """``spc/bridge/state/<client id>``: which instance serves it (``online``), or that it stopped
    (``offline``). Not a liveness signal: spc/bridge/state is the last will; after a crash this one
    names the dead instance until another takes over."""

    state: Literal["online", "offline"]
    instance: str
    client_id: str
    partition: int
    partitions: int
    epoch: int  # of its lease: raised by every take-over
    since: str  # when it took over, ISO 8601


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
    """``spc/<id>/ack``: a violation was acknowledged (the seed's ``ack_update``); ``ack_reason`` is
    the comment, ``reason_code`` one of the bridge's reason codes, ``assignable_cause`` whether its
    sample is proposed for exclusion at the next ``recalculate``."""

    violation_id: int
    characteristic_id: int
    acknowledged: bool
    ack_user: str | None
    ack_reason: str | None
    ack_time: str | None
    reason_code: str | None = None
    assignable_cause: bool = False


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


class LimitSetId(_Event):
    """A limit set: its id, and its version among the characteristic's limit sets (1, 2, ...)."""

    id: int
    version: int


class LimitsEvent(_Event):
    """``spc/<id>/limits`` (retained): the current limits; all null while in the baseline.

    ``limit_set`` names the limit set in force; ``effective_from`` is the id of the first sample it
    judged, null until one has been.

    ``reason``, in the baseline only: why the last baseline gave no limits (they would not be
    finite numbers) and where the new one starts; null otherwise.
    ``statistic`` says what a dashboard plots against the limits: the sample's ``value``, its
    ``cusum_upper`` and ``-cusum_lower`` (limits +H and -H around 0), or its ``ewma``.
    """

    characteristic_id: int
    name: str | None = None
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
    limit_set: LimitSetId | None = None
    effective_from: int | None = None


class StatusEvent(_Event):
    """``spc/<id>/status`` (retained): where the characteristic stands (bridge.service.status).

    ``stale`` turns true when its Sparkplug edge node or device dies (NDEATH, DDEATH) or the
    bridge's Sparkplug connection is lost, or when a sample is overdue (``expected_interval``), with
    ``stale_reason``; a new birth, or the next reading, makes it false. ``in_control`` is that of
    the last sample (null in the baseline), ``last_sample_at`` when it arrived.
    """

    characteristic_id: int
    stale: bool
    stale_reason: str | None
    timestamp: str
    phase: Literal["baseline", "monitoring"]
    in_control: bool | None = None
    open_violations: int = 0
    last_sample_at: str | None = None
    cpk: float | None = None


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
    reason_code: str
    reason: str = ""
    assignable_cause: bool = False
    transaction: Transaction | None = None


CharacteristicId = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
SampleId = Annotated[StrictInt, Field(ge=1, le=INT64)]
Limit = Annotated[float, Field(allow_inf_nan=False)]


class _WorkflowRequest(BaseModel):
    """An engineer's change to one characteristic; ``reason`` says why, for the audit trail."""

    model_config = ConfigDict(extra="forbid")

    characteristic_id: CharacteristicId
    reason: str
    transaction: Transaction | None = None


class RecalculateRequest(_WorkflowRequest):
    """``.../recalculate``: the limits again from the current baseline without these samples; left
    out, without the samples proposed by acknowledgements that marked an assignable cause. With
    ``preview``, nothing changes: the answer has the limits as they would be (``reason`` may be empty)."""

    exclude_sample_ids: list[SampleId] | None = Field(None, max_length=MAX_EXCLUDED)
    preview: bool = False


class StartBaselineRequest(_WorkflowRequest):
    """``.../start_baseline``: a new phase I; fixed limits are dropped, the next samples set them."""


class SetLimitsRequest(_WorkflowRequest):
    """``.../set_limits``: fix any of the limits (the others still come from the baseline)."""

    center: Limit | None = None
    ucl: Limit | None = None
    lcl: Limit | None = None
    sigma: Limit | None = None


class RulesRequest(_WorkflowRequest):
    """``.../rules``: the rules of the chart and of its dispersion chart (a preset name or a list)."""

    rules: str | list[int | dict[str, Any]] | None = None
    dispersion_rules: str | list[int | dict[str, Any]] | None = None


class CharacteristicRequest(BaseModel):
    """``.../characteristic``: create, update or retire a characteristic; ``characteristic`` has the
    keys of a ``[[characteristic]]`` table of the file (for ``retire``, its ``id`` is enough)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["create", "update", "retire"]
    characteristic: dict[str, Any]
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
