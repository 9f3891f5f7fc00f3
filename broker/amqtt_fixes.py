"""Fixes to amqtt 0.12.1's broker-side protocol handler, injected by broker.embedded.

amqtt issue #401 (fix in PR #402, unreleased): amqtt forgets a QoS 1 message it is delivering to a client as
soon as its wait for the PUBACK ends, whether the PUBACK came or not. The `finally` of
`ProtocolHandler._handle_qos1_message_flow` (amqtt/mqtt/protocol/handler.py:325-328) removes it from
`session.inflight_out` when the wait is cancelled because the client disconnected (`_stop_waiters`,
handler.py:139 and :158-172) and when the PUBACK takes more than 5 s (handler.py:320-324). A persistent
session (clean_session=False) therefore never sees it again, although amqtt resends whatever is left in
`inflight_out`, with DUP set, when that session connects again (`_retry_deliveries`, called by
`ProtocolHandler.start`, handler.py:134 and :174-193; the broker reuses the Session object, broker.py:517-530,
and starts the new connection's handler on it, broker.py:579-593).

`AtLeastOnceBrokerHandler` leaves an outgoing QoS 1 message in `inflight_out` from before it is sent until its
PUBACK settles it, however late (amqtt ignores a PUBACK after its 5 s wait, handler.py:677-688). Without that
wait it also costs less: amqtt's timer, future and `wait_for` per message were a tenth of the broker's time
while it drained a backlog. QoS 2 is left as amqtt has it: we use QoS 1 only, and its flow frees the packet id
before PUBCOMP (handler.py:393-395), so keeping it would take more than this.

Keep-alive: amqtt's reader waits the session's keep-alive for each packet and calls `handle_read_timeout` when
the wait runs out (handler.py:466 and :537-539), but the broker's handler does nothing there
(broker_handler.py:86-87), so a client that went silent stayed connected and its will was never published.
`KeepAliveBrokerHandler` closes such a connection as if its socket had ended: amqtt then publishes the will and
ends the session (broker.py:672-697).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import IncomingApplicationMessage, OutgoingApplicationMessage

__all__ = ["AtLeastOnceBrokerHandler", "KeepAliveBrokerHandler"]

_logger = logging.getLogger(__name__)
ROOM_CHECK_S = 1.0  # how often a wait for room in flight looks whether the connection is still there


class AtLeastOnceBrokerHandler(BrokerProtocolHandler):
    """amqtt's broker-side handler, keeping QoS 1 messages until the client acknowledges them (amqtt #401).

    An outgoing QoS 1 message is put in the session's in-flight messages, sent, and left there until its PUBACK
    comes, however late: no 5 s wait that forgets it, and no timer and future per message. Whatever is still in
    flight when the connection ends goes again, with DUP set, on the session's next connection (amqtt's
    `_retry_deliveries`). Incoming messages and QoS 2 keep amqtt's flows.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acknowledged = asyncio.Event()  # set by each PUBACK that settles a message

    async def _handle_qos1_message_flow(
        self, app_message: OutgoingApplicationMessage | IncomingApplicationMessage
    ) -> None:
        session = self.session
        if session is None or not isinstance(app_message, OutgoingApplicationMessage) or app_message.packet_id is None:
            await super()._handle_qos1_message_flow(app_message)
            return
        # In flight before it is sent: a PUBACK can only settle what is there, and a disconnection while it is
        # written leaves it for the next connection.
        session.inflight_out.setdefault(app_message.packet_id, app_message)
        packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
        await self._send_packet(packet)
        app_message.publish_packet = packet

    async def handle_puback(self, puback: PubackPacket) -> None:
        packet_id = puback.variable_header.packet_id if puback.variable_header is not None else None
        if packet_id in self._puback_waiters:  # a flow of amqtt's own waits for it
            await super().handle_puback(puback)
            return
        session = self.session
        message = session.inflight_out.get(packet_id) if session is not None and packet_id is not None else None
        if isinstance(message, OutgoingApplicationMessage) and message.qos == QOS_1 and message.puback_packet is None:
            message.puback_packet = puback
            del session.inflight_out[packet_id]  # type: ignore[union-attr]
            self._acknowledged.set()
            return
        _logger.debug("PUBACK for QoS 1 message %s, which is not in flight", packet_id)

    async def room(self, limit: int) -> bool:
        """Wait until fewer than ``limit`` messages of the session are in flight to the client; False, at once or
        within ROOM_CHECK_S, if this connection has ended meanwhile."""
        session = self.session
        while self._writable() and session is not None and len(session.inflight_out) >= limit:
            self._acknowledged.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acknowledged.wait(), ROOM_CHECK_S)
        return self._writable() and session is not None

    def _writable(self) -> bool:
        """Whether this connection's writer is still open."""
        return self.writer is not None and not getattr(self.writer, "is_closed", False)


class KeepAliveBrokerHandler(BrokerProtocolHandler):
    """amqtt's broker-side handler, dropping a client that sent nothing for its keep-alive timeout."""

    _closing: asyncio.Task[None] | None = None

    def handle_read_timeout(self) -> None:
        if self._closing is None:  # kept: the loop holds only a weak reference to a task
            self._closing = asyncio.ensure_future(self.handle_connection_closed())
