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
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext, ListenerConfig
from amqtt.errors import MQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseTopicPlugin
from amqtt.plugins.manager import PluginManager
from amqtt.session import Session

from broker.roles import permits

__all__ = ["AccessControlBroker", "ReadAclHandler", "RoleAclPlugin"]

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

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        """Whether the session's user may do `action` on `topic`."""
        if action == Action.SUBSCRIBE:
            return True
        table = self._rights.publish if action == Action.PUBLISH else self._rights.read
        username = session.username if session is not None else None
        return topic is not None and username is not None and permits(table.get(username, ()), topic)


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


class AccessControlBroker(Broker):
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
        # Messages queued while the session was offline, checked then against the user it had then.
        handler = self._get_handler(session)
        queued = session.retained_messages
        sends = []
        while handler is not None and not queued.empty():
            message = queued.get_nowait()
            if message.topic is not None and await self._topic_filtering(session, message.topic, Action.RECEIVE):
                sends.append(asyncio.ensure_future(handler.mqtt_publish(message.topic, message.data, message.qos,
                                                                        retain=False)))
        if sends:
            await asyncio.wait(sends)

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
            for topic, retained in list(self._retained_messages.items())
            if self._matches(topic, topic_filter) and await self._topic_filtering(session, topic, Action.RECEIVE)
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


async def _may_receive(plugins_manager: PluginManager[Any], session: Session, topic: str) -> bool:
    """The RECEIVE check of the topic plugins, as amqtt's Broker._topic_filtering makes it."""
    if not plugins_manager.is_topic_filtering_enabled():
        return True
    results = await plugins_manager.map_plugin_topic(session=session, topic=topic, action=Action.RECEIVE)
    return all(results.values())


class ReadAclHandler(BrokerProtocolHandler):
    """amqtt's broker-side handler, sending again the messages left in flight only if the user may read them.

    The session may have been resumed by another user since they were first sent (see the module docstring).
    """

    async def _retry_deliveries(self) -> None:
        session = self.session
        if session is not None:
            for packet_id, message in list(session.inflight_out.items()):
                if message.topic is not None and not await _may_receive(self.plugins_manager, session, message.topic):
                    del session.inflight_out[packet_id]
        await super()._retry_deliveries()
