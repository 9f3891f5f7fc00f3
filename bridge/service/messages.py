"""What the service's stages pass on: a message as received, an event as committed."""

from datetime import datetime
from typing import Any, NamedTuple


class Inbound(NamedTuple):
    """A message as received: the transport's ``token`` is what acknowledging it needs.

    ``delivery_id`` is the MQTT packet id of a QoS 1 message (None at QoS 0) and ``redelivered``
    its DUP flag: the broker is sending it again because it has no PUBACK for it. ``retained`` is
    the RETAIN flag: the broker replays a stored message because a subscription was just made.
    """

    topic: str
    payload: bytes
    received_at: datetime
    token: Any
    delivery_id: int | None = None
    redelivered: bool = False
    retained: bool = False


class Outgoing(NamedTuple):
    """A committed event to publish; ``seq`` orders it in this bridge's outbox."""

    seq: int
    topic: str
    payload: str
    retain: bool


class Event(NamedTuple):
    """An event to put in the outbox, its payload ready."""

    topic: str
    payload: str
    retain: bool
