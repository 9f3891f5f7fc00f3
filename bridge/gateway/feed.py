"""The gateway's MQTT side: an aiomqtt subscriber to every characteristic's sample, violation and ack events.

It needs no database and no bridge of its own: whatever bridges publish on the broker reaches the
dashboards. Each event is checked against the seed's payload fields and passed on whole.
"""

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
from pydantic import ValidationError

from bridge.broker_errors import connect_failure
from bridge.config import BrokerUrl
from bridge.contract import (
    ANY_CHARACTERISTIC, EVENT_QOS, CharacteristicRef, ack_topic, sample_topic, violation_topic,
)
from bridge.gateway.connections import ConnectionManager
from bridge.gateway.protocol import (
    AckUpdatePayload, EventPayload, EventType, SamplePayload, ViolationPayload, error_message, event_message,
)

log = logging.getLogger("spc-bridge.gateway")

RETRY_FIRST = 1.0
RETRY_MAX = 30.0
KEEPALIVE = 30
BROKER_LOST = "lost the MQTT broker: no events until it is back (the gateway reconnects by itself)"


@dataclass(frozen=True)
class EventKind:
    """An MQTT event stream and the seed notification it becomes."""

    message_type: EventType
    topic_of: Callable[[CharacteristicRef], str]
    payload: type[EventPayload]

    @property
    def filter(self) -> str:
        """The subscription that receives this event for every characteristic."""
        return self.topic_of(ANY_CHARACTERISTIC)


KINDS = (
    EventKind("sample", sample_topic, SamplePayload),
    EventKind("violation", violation_topic, ViolationPayload),
    EventKind("ack_update", ack_topic, AckUpdatePayload),
)


class MqttFeed:
    """Subscribes to the events of every characteristic and hands each one to its subscribers."""

    def __init__(self, broker: BrokerUrl, manager: ConnectionManager, tls: ssl.SSLContext | None) -> None:
        self.broker = broker
        self.manager = manager
        self.tls = tls
        self.subscribed = asyncio.Event()  # set while subscribed to the broker
        self.received = 0  # events received from the broker

    async def run(self) -> None:
        """Receive events until cancelled; reconnect with backoff (1 s doubling to 30 s) whenever the broker goes."""
        delay = RETRY_FIRST
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as error:
                if self.subscribed.is_set():
                    self.subscribed.clear()
                    log.warning("MQTT connection to %s lost: %s", self.broker, error)
                    self.manager.broadcast_to_all(error_message(BROKER_LOST))
                    delay = RETRY_FIRST
                else:
                    log.warning("%s; next attempt in %g s", connect_failure(error, self.broker).text, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _session(self) -> None:
        broker = self.broker
        async with aiomqtt.Client(
            broker.host, broker.port, username=broker.username, password=broker.password,
            transport=broker.transport, websocket_path=broker.path, tls_context=self.tls,
            clean_session=True, keepalive=KEEPALIVE,
        ) as client:
            for kind in KINDS:
                await client.subscribe(kind.filter, qos=EVENT_QOS)
            self.subscribed.set()
            log.info("MQTT subscribed to %s on %s", ", ".join(k.filter for k in KINDS), broker)
            async for message in client.messages:
                self._forward(message)

    def _forward(self, message: aiomqtt.Message) -> None:
        self.received += 1
        kind = next((k for k in KINDS if message.topic.matches(k.filter)), None)
        if kind is None or not isinstance(message.payload, bytes):
            return
        try:
            payload = kind.payload.model_validate_json(message.payload)
        except ValidationError as error:
            log.warning("ignored %s: not a %s event: %s", message.topic, kind.message_type,
                        error.errors(include_url=False)[0]["msg"])
            return
        if kind.topic_of(payload.characteristic_id) != message.topic.value:
            log.warning("ignored %s: its characteristic_id is %d", message.topic, payload.characteristic_id)
            return
        self.manager.broadcast_to_characteristic(payload.characteristic_id, event_message(kind.message_type, payload))
