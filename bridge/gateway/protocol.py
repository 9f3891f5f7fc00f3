"""The seed's JSON WebSocket protocol (OpenSPC BE-018): client messages, server messages, event payloads.

Client → server: ``{"type": "subscribe" | "unsubscribe", "characteristic_ids": [1, 2]}`` and
``{"type": "ping"}``. Server → client: ``{"type": "sample" | "violation" | "ack_update", "payload": {...}}``,
the replies ``subscribed`` / ``unsubscribed`` (with the ids), ``pong``, and ``error``.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.config import MAX_ID
from bridge.jsondepth import deeper_than

MAX_IDS = 1000  # characteristic ids in one subscribe or unsubscribe message
MAX_MESSAGE = 65536  # bytes in one client message; a larger one is refused with an error
MAX_DEPTH = 8  # nested arrays and objects in one client message (the protocol needs 2)

CharacteristicId = Annotated[int, Field(strict=True, gt=0, le=MAX_ID)]
EventType = Literal["sample", "violation", "ack_update"]


class ProtocolError(ValueError):
    """A client message the gateway cannot act on; the message is sent back in an ``error``."""


class _ClientMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # the seed ignored fields it did not use


class Subscribe(_ClientMessage):
    """Receive the events of these characteristics from now on."""

    type: Literal["subscribe"]
    characteristic_ids: list[CharacteristicId] = Field(max_length=MAX_IDS)


class Unsubscribe(_ClientMessage):
    """Stop receiving the events of these characteristics."""

    type: Literal["unsubscribe"]
    characteristic_ids: list[CharacteristicId] = Field(max_length=MAX_IDS)


class Ping(_ClientMessage):
    """The client's heartbeat; answered with ``pong``."""

    type: Literal["ping"]


ClientMessage = Subscribe | Unsubscribe | Ping
_CLIENT_TYPES: dict[str, type[ClientMessage]] = {"subscribe": Subscribe, "unsubscribe": Unsubscribe, "ping": Ping}


def parse_client_message(frame: str | bytes) -> ClientMessage:
    """One WebSocket frame from a client as a message; ProtocolError says what is wrong with it."""
    if isinstance(frame, bytes):
        raise ProtocolError("binary frames are not part of the protocol: send JSON as text")
    data = frame.encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"the message is {len(data)} bytes; at most {MAX_MESSAGE} are accepted")
    if deeper_than(data, MAX_DEPTH):
        raise ProtocolError(f"the message nests deeper than {MAX_DEPTH} levels: not a message of this protocol")
    try:
        body = json.loads(data)
    except ValueError as error:
        raise ProtocolError(f"not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ProtocolError("a message is a JSON object with a 'type' field")
    if "type" not in body:
        raise ProtocolError("Message must contain 'type' field")  # the seed's wording
    model = _CLIENT_TYPES.get(body["type"]) if isinstance(body["type"], str) else None
    if model is None:
        raise ProtocolError(f"Unknown message type: {body['type']!r} (known: {', '.join(_CLIENT_TYPES)})")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_url=False))
        raise ProtocolError(f"bad {body['type']} message: {problems}") from None


# --- server → client -------------------------------------------------------------------------------


class _Payload(BaseModel):
    # Our MQTT events carry more than the seed's fields (n, chart, ack_time, ...): all of it is passed on.
    model_config = ConfigDict(extra="allow", frozen=True)

    characteristic_id: int


class SamplePayload(_Payload):
    """The seed's ``sample`` payload (zone and in_control are null during our baseline)."""

    sample_id: int
    timestamp: str
    value: float
    zone: str | None
    in_control: bool | None


class ViolationPayload(_Payload):
    """The seed's ``violation`` payload."""

    violation_id: int
    sample_id: int
    rule_id: int
    rule_name: str
    severity: str


class AckUpdatePayload(_Payload):
    """The seed's ``ack_update`` payload."""

    violation_id: int
    acknowledged: bool
    ack_user: str | None
    ack_reason: str | None


EventPayload = SamplePayload | ViolationPayload | AckUpdatePayload


class EventMessage(BaseModel):
    """A notification: ``{"type": ..., "payload": {...}}``."""

    type: EventType
    payload: dict[str, Any]


class IdsReply(BaseModel):
    """The seed's confirmation of a subscribe or unsubscribe, with the ids it was given."""

    type: Literal["subscribed", "unsubscribed"]
    characteristic_ids: list[int]


class Pong(BaseModel):
    """The answer to ``ping``."""

    type: Literal["pong"] = "pong"


class ErrorMessage(BaseModel):
    """A refused client message or a gateway notice; the connection stays open.

    The seed's clients read ``message``; ``payload.message`` gives the same text in the envelope its
    notifications use.
    """

    type: Literal["error"] = "error"
    message: str
    payload: dict[str, str]


def event_message(event_type: EventType, payload: EventPayload) -> str:
    """The JSON text of a notification, every field of the MQTT event passed through."""
    return EventMessage(type=event_type, payload=payload.model_dump()).model_dump_json()


def ids_reply(kind: Literal["subscribed", "unsubscribed"], ids: list[int]) -> str:
    """The JSON text of ``subscribed`` or ``unsubscribed``."""
    return IdsReply(type=kind, characteristic_ids=ids).model_dump_json()


def pong() -> str:
    """The JSON text of ``pong``."""
    return Pong().model_dump_json()


def error_message(text: str) -> str:
    """The JSON text of an ``error``."""
    return ErrorMessage(message=text, payload={"message": text}).model_dump_json()
