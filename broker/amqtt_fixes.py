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

`AtLeastOnceBrokerHandler` puts an unacknowledged outgoing QoS 1 message back into `inflight_out` when that
flow ends, and honours a PUBACK that comes after the 5 s wait, which amqtt ignores (handler.py:677-688).
QoS 2 is left as amqtt has it: we use QoS 1 only, and its flow frees the packet id before PUBCOMP
(handler.py:393-395), so keeping it would take more than this.

Keep-alive: amqtt's reader waits the session's keep-alive for each packet and calls `handle_read_timeout` when
the wait runs out (handler.py:466 and :537-539), but the broker's handler does nothing there
(broker_handler.py:86-87), so a client that went silent stayed connected and its will was never published.
`KeepAliveBrokerHandler` closes such a connection as if its socket had ended: amqtt then publishes the will and
ends the session (broker.py:672-697).
"""

from __future__ import annotations

import asyncio
import logging

from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import (
    IncomingApplicationMessage,
    OutgoingApplicationMessage,
    Session,
)

__all__ = ["AtLeastOnceBrokerHandler", "KeepAliveBrokerHandler"]

_logger = logging.getLogger(__name__)


def _keep_unacknowledged(
    session: Session | None, message: IncomingApplicationMessage | OutgoingApplicationMessage
) -> bool:
    """Put `message` back into its session's in-flight messages unless the client acknowledged it.

    Returns whether the message is now waiting there for the session's next connection.
    """
    if (
        session is None
        or not isinstance(message, OutgoingApplicationMessage)
        or message.packet_id is None
        or message.puback_packet is not None
    ):
        return False
    # The packet id cannot belong to another message: amqtt removed this one in the same step, with no await
    # in between, and it never hands out an id that is in flight (amqtt/session.py:225-235).
    session.inflight_out.setdefault(message.packet_id, message)
    return True


class AtLeastOnceBrokerHandler(BrokerProtocolHandler):
    """amqtt's broker-side handler, keeping QoS 1 messages until the client acknowledges them (amqtt #401)."""

    async def _handle_qos1_message_flow(
        self, app_message: OutgoingApplicationMessage | IncomingApplicationMessage
    ) -> None:
        session = self.session  # read once: the flow can outlive the connection it started on
        try:
            await super()._handle_qos1_message_flow(app_message)
        except TimeoutError:
            # amqtt's 5 s wait for the PUBACK ran out. The message is kept below and goes again with the
            # session's next connection, unless a late PUBACK settles it first, so this is no failure;
            # raising would make the broadcast loop log "Task failed and will be skipped" with a traceback.
            if session is None or not isinstance(app_message, OutgoingApplicationMessage):
                raise
            _logger.debug("QoS 1 message %s kept for redelivery: no PUBACK yet", app_message.packet_id)
        finally:
            # Also on cancellation: the client disconnected (handler.py:139) or the broker is stopping.
            _keep_unacknowledged(session, app_message)

    async def handle_puback(self, puback: PubackPacket) -> None:
        packet_id = puback.variable_header.packet_id if puback.variable_header is not None else None
        waiter = self._puback_waiters.get(packet_id) if packet_id is not None else None
        if waiter is None or waiter.done():
            # Nobody waits for it any more (amqtt stopped waiting after 5 s): settle the kept message here,
            # otherwise it would be sent again, although acknowledged, on the next connection.
            session = self.session
            message = session.inflight_out.get(packet_id) if session is not None else None
            if isinstance(message, OutgoingApplicationMessage) and message.qos == QOS_1 and message.puback_packet is None:
                message.puback_packet = puback
                del session.inflight_out[packet_id]
                _logger.debug("late PUBACK for QoS 1 message %s", packet_id)
                return
        await super().handle_puback(puback)


class KeepAliveBrokerHandler(BrokerProtocolHandler):
    """amqtt's broker-side handler, dropping a client that sent nothing for its keep-alive timeout."""

    _closing: asyncio.Task[None] | None = None

    def handle_read_timeout(self) -> None:
        if self._closing is None:  # kept: the loop holds only a weak reference to a task
            self._closing = asyncio.ensure_future(self.handle_connection_closed())
