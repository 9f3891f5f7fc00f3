"""Access control on the embedded broker: our role ACL as an amqtt plugin, and the fixes to amqtt 0.12.1's
Broker without which neither passwords nor read rights would hold.

amqtt 0.12.1 (amqtt/broker.py) checks the PUBLISH and RECEIVE ACL on live messages only. `AccessControlBroker`
closes the other ways in:

- Retained messages: a connecting client got the retained messages of every topic filter *any* client had
  subscribed to (broker.py:599-602), and every retained message went out without the RECEIVE check
  (`_publish_retained_messages_for_subscription`, broker.py:1134). Now retained messages go out only for the
  client's own new subscription, as MQTT-3.3.1-6 says and Mosquitto does, and only those it may read.
- Authentication came after the CONNECT had already changed the broker: a client with a wrong password
  could delete another client's persistent session (clean session, broker.py:504-507), take over its
  connection (broker.py:561-575) or put its own user name on it (broker.py:517-526). Now the CONNECT is
  authenticated before amqtt looks at any session, and the auth plugin (broker.amqtt_login) also refuses a
  client id that is not the user's (broker.identity): no user can take over, resume or wipe another's session.
- A last will went out without the PUBLISH check (broker.py:675-687): a gauge could forge a violation as
  its will. A will the client may not publish is now dropped, as Mosquitto does.
- Messages queued for an offline persistent session, and those in flight when it went away, were sent when
  it came back without the RECEIVE check, although another user may have resumed it under the same client
  id. Now each is checked when it is sent (`ReadAclHandler` for those in flight), as Mosquitto does. Queued
  messages also lose the RETAIN flag amqtt set on them (MQTT-3.3.1-9). (With users, broker.identity now
  keeps other users out of a session altogether; these checks stay as a second line.)
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.contexts import Action, BaseContext, ListenerConfig
from amqtt.errors import MQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseTopicPlugin
from amqtt.plugins.manager import PluginManager
from amqtt.session import Session

from broker.amqtt_fixes import AtLeastOnceBrokerHandler
from broker.amqtt_index import IndexedBroker
from broker.roles import permits

__all__ = ["AccessControlBroker", "ReadAclHandler", "RoleAclPlugin", "permitted"]

_logger = logging.getLogger(__name__)
QUEUED_IN_FLIGHT = 1000  # queued messages sent to a returning session ahead of their PUBACKs, as Mosquitto
ANSWERS_KEPT = 100_000  # ACL answers RoleAclPlugin remembers
# Per connection (each has its own asyncio task, hence its own context):
# whether its CONNECT passed authentication before amqtt touched any session,
_AUTHENTICATED: ContextVar[bool] = ContextVar("authenticated", default=False)
# and whether amqtt is handling one of its SUBSCRIBE packets.
_SUBSCRIBING: ContextVar[bool] = ContextVar("subscribing", default=False)


class RoleAclPlugin(BaseTopicPlugin):
    """The role table (broker.roles) as an amqtt topic filter: PUBLISH and RECEIVE by the user's rights.

    Every SUBSCRIBE is granted, as Mosquitto 2.0 grants it: what a user may not read is never delivered, on
    any path. amqtt's own TopicAccessControlListPlugin cannot do this: it has no receive ACL in its
    configuration, and its `subscribe_acl` key crashes start-up.
    """

    @dataclass
    class Config:
        """Topic filters each user name may publish on and read from (broker.roles.rights)."""

        publish: dict[str, list[str]] = field(default_factory=dict)
        read: dict[str, list[str]] = field(default_factory=dict)

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._rights = cast("RoleAclPlugin.Config", self.config)
        # Answers by (user, publish or read, topic): the rights are fixed for the broker's life, and a plant's
        # topics are few and repeat with every reading, so matching each filter again cost more than the
        # delivery. Emptied when full, which bounds it against clients that invent topics.
        self._answers: dict[tuple[str, bool, str], bool] = {}

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        """Whether the session's user may do `action` on `topic`."""
        if action == Action.SUBSCRIBE:
            return True
        username = session.username if session is not None else None
        if topic is None or username is None:
            return False
        key = (username, action == Action.PUBLISH, topic)
        answer = self._answers.get(key)
        if answer is None:
            if len(self._answers) >= ANSWERS_KEPT:
                self._answers.clear()
            table = self._rights.publish if key[1] else self._rights.read
            answer = self._answers[key] = permits(table.get(username, ()), topic)
        return answer


class _RewindableReader(ReaderAdapter):
    """Records what is read from a connection until rewound, then gives that back before reading on."""

    def __init__(self, reader: ReaderAdapter) -> None:
        self._reader = reader
        self._recorded = bytearray()
        self._recording = True
        self._replay = b""

    def rewind(self) -> None:
        """Read again from where recording started; stop recording."""
        self._replay, self._recording = bytes(self._recorded), False

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (exactly `n` where the underlying reader reads exactly)."""
        if self._replay:
            if 0 <= n <= len(self._replay):
                data, self._replay = self._replay[:n], self._replay[n:]
                return data
            head, self._replay = self._replay, b""
            return head + await self._reader.read(-1 if n < 0 else n - len(head))
        data = await self._reader.read(n)
        if self._recording:
            self._recorded += data
        return data

    def feed_eof(self) -> None:
        """Pass EOF on."""
        self._reader.feed_eof()


class AccessControlBroker(IndexedBroker):
    """amqtt's Broker with authentication before any session is touched, and the read and publish ACLs
    applied to retained messages, queued messages and last wills (see the module docstring)."""

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        rewindable = _RewindableReader(reader)
        try:
            connect: ConnectPacket | None = await ConnectPacket.from_stream(rewindable)
        except Exception:  # amqtt reads the same bytes again below and reports the problem as it always does
            connect = None
        rewindable.rewind()
        if connect is not None:
            if not await self._authenticate_connect(connect, remote_address, remote_port):
                try:
                    await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                    await writer.close()
                except ConnectionError:
                    pass  # the client went first, having read the CONNACK or not
                raise MQTTError(f"not authorized: user {connect.username!r} from {remote_address}:{remote_port}")
            _AUTHENTICATED.set(True)
        # amqtt only reads the CONNECT from here, so the rewound reader is not kept for the connection.
        return await super()._initialize_client_session(rewindable, writer, remote_address, remote_port)

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        return await permitted(self.plugins_manager, session, topic, action)

    async def _authenticate_connect(self, connect: ConnectPacket, remote_address: str, remote_port: int) -> bool:
        """Ask the auth plugins about a CONNECT, with a session of its own that no other client shares."""
        candidate = Session()
        # "" for a client that sent none: amqtt has already put a random id of its own in the packet.
        candidate.client_id = "" if connect.payload.client_id_is_random else connect.client_id
        candidate.username = connect.username
        candidate.password = connect.password
        candidate.remote_address = remote_address
        candidate.remote_port = remote_port
        return await super()._authenticate(candidate, self.listeners_config["default"])

    async def _authenticate(self, session: Session, _: ListenerConfig) -> bool:
        # amqtt asks once it has set the session up; the answer was given in _initialize_client_session.
        return _AUTHENTICATED.get()

    async def _publish_session_retained_messages(self, session: Session) -> None:
        # Messages queued while the session was offline, sent by a task of their own so that the client's own
        # packets are handled meanwhile: amqtt routed nothing the client published, and took none of its
        # subscriptions, until the last queued message had gone (broker.py:597-604), so a bridge draining a
        # backlog had its events held back for as long. New messages for it join the end of its queue
        # meanwhile (IndexedBroker.draining): the order holds.
        handler = self._get_handler(session)
        client_id = session.client_id
        if client_id is None or not isinstance(handler, AtLeastOnceBrokerHandler) or session.retained_messages.empty():
            return
        drain = asyncio.ensure_future(self._drain_queue(session, handler))
        self.draining[client_id] = drain

        def finished(_: asyncio.Future[None]) -> None:
            if self.draining.get(client_id) is drain:  # not a later connection's drain
                del self.draining[client_id]
            if not drain.cancelled() and drain.exception() is not None:
                # what was not sent stays queued, and what was sent in flight, for the next connection
                _logger.warning("sending %s its queued messages stopped: %s", client_id, drain.exception())

        drain.add_done_callback(finished)

    async def _drain_queue(self, session: Session, handler: AtLeastOnceBrokerHandler) -> None:
        """Send the session's queued messages, checked then against the user it had then, while fewer than
        QUEUED_IN_FLIGHT await their PUBACKs and the connection lasts. amqtt sent every one at once, a task each
        (100,000 for the bench's backlog), with nothing but the client's pace between them and the 65,535 packet
        ids a session has (amqtt/session.py:225-235)."""
        queued = session.retained_messages
        while not queued.empty() and await handler.room(QUEUED_IN_FLIGHT):
            message = queued.get_nowait() if not queued.empty() else None
            if message is not None and message.topic is not None and await self._topic_filtering(
                    session, message.topic, Action.RECEIVE):
                await handler.mqtt_publish(message.topic, message.data, message.qos, retain=False)

    async def _handle_subscription(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        subscribe_waiter: asyncio.Future[Any],
    ) -> None:
        token = _SUBSCRIBING.set(True)
        try:
            await super()._handle_subscription(client_session, handler, subscribe_waiter)
        finally:
            _SUBSCRIBING.reset(token)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        if not _SUBSCRIBING.get():
            return  # amqtt's call at connect time, for the filters of every client (broker.py:599-602)
        handler = self._get_handler(session)
        if handler is None:
            return
        topic_filter, qos = subscription
        sends = [
            asyncio.ensure_future(handler.mqtt_publish(retained.topic, retained.data, min(qos, retained.qos or qos),
                                                       retain=True))
            for retained in self.retained_matching(topic_filter)
            if await self._topic_filtering(session, retained.topic, Action.RECEIVE)
        ]
        if sends:
            await asyncio.wait(sends)

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any],
    ) -> None:
        if client_session.will_flag and not (
            client_session.will_topic
            and await self._topic_filtering(client_session, client_session.will_topic, Action.PUBLISH)
        ):
            client_session.will_flag = False  # the next CONNECT sets it again
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)


async def permitted(plugins_manager: PluginManager[Any], session: Session, topic: str, action: Action) -> bool:
    """Whether every topic plugin lets the session do ``action`` on ``topic``, as amqtt's Broker._topic_filtering
    decides (no topic filtering: yes; an answer that is not true: no), with each plugin asked in turn.

    amqtt gives each plugin's answer a task of its own and gathers them (amqtt/plugins/manager.py:361-391), which
    cost more than the ACL itself on every delivery; the role ACL answers without waiting on anything.
    """
    if not plugins_manager.is_topic_filtering_enabled():
        return True
    for plugin in plugins_manager._topic_plugins:  # what amqtt's map_plugin_topic asks
        if not await plugin.topic_filtering(session=session, topic=topic, action=action):
            return False
    return True


class ReadAclHandler(BrokerProtocolHandler):
    """amqtt's broker-side handler, sending again the messages left in flight only if the user may read them.

    The session may have been resumed by another user since they were first sent (see the module docstring).
    """

    async def _retry_deliveries(self) -> None:
        session = self.session
        if session is not None:
            for packet_id, message in list(session.inflight_out.items()):
                if message.topic is not None and not await permitted(self.plugins_manager, session, message.topic,
                                                                     Action.RECEIVE):
                    del session.inflight_out[packet_id]
        await super()._retry_deliveries()
