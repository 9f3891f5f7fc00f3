"""Connected dashboards: subscriptions, heartbeats, broadcasts and removal (the seed's ConnectionManager).

Every client has its own queue of outgoing messages and a task that writes them, so a slow or dead client
never holds up the others: a send that fails removes the client, and so does a queue that fills up.
A client subscribes to at most MAX_SUBSCRIPTIONS characteristics, and what it leaves is given back: a
Python dict never shrinks by deleting, so the table of subscribers is rebuilt once mostly empty.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("spc-bridge.gateway")

MAX_SUBSCRIPTIONS = 1000  # characteristics one client may subscribe to
SHRINK_FROM = 1024  # a subscriber table that grew past this is rebuilt once it is a quarter full
CLOSE_HEARTBEAT_TIMEOUT = 4408  # an application close code mirroring HTTP 408, as graphql-ws uses it
CLOSE_GOING_AWAY = 1001


@dataclass(eq=False)
class Client:
    """One WebSocket connection and what it asked for."""

    number: int
    websocket: ServerConnection
    outbox: asyncio.Queue[str]
    last_seen: float = field(default_factory=time.monotonic)
    subscriptions: set[int] = field(default_factory=set)
    writer: asyncio.Task[None] | None = None

    def __str__(self) -> str:
        address = self.websocket.remote_address
        return f"client {self.number} ({address[0]}:{address[1]})" if address else f"client {self.number}"


class ConnectionManager:
    """Every connected client, who subscribed to what, and the stale-connection cleanup loop."""

    def __init__(self, heartbeat_interval: float, heartbeat_timeout: float, max_pending: int) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_pending = max_pending
        self._clients: set[Client] = set()
        self._subscribers: dict[int, set[Client]] = {}
        self._largest = 0  # the most entries _subscribers has had since it was last rebuilt
        self._numbers = 0
        self._closing: set[asyncio.Task[None]] = set()
        self.sent = 0  # messages written to clients
        self.dropped = 0  # messages for clients that were never written: too slow, or gone meanwhile

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def subscriptions(self) -> int:
        """Subscriptions of every client together (a client's to each of its characteristics)."""
        return sum(len(client.subscriptions) for client in list(self._clients))

    def connect(self, websocket: ServerConnection) -> Client:
        """Register a new connection and start writing to it."""
        self._numbers += 1
        client = Client(self._numbers, websocket, asyncio.Queue(self.max_pending))
        client.writer = asyncio.create_task(self._write(client), name=f"gateway-writer-{client.number}")
        self._clients.add(client)
        log.info("%s connected; %d connected", client, len(self._clients))
        return client

    def disconnect(self, client: Client, why: str) -> None:
        """Forget a client and its subscriptions, and stop writing to it (nothing if already gone)."""
        if client not in self._clients:
            return
        self._clients.discard(client)
        self.dropped += client.outbox.qsize()
        self.unsubscribe(client, list(client.subscriptions))
        client.subscriptions = set()
        if client.writer is not None and client.writer is not asyncio.current_task():
            client.writer.cancel()
        log.info("%s removed: %s; %d connected", client, why, len(self._clients))

    def touch(self, client: Client) -> None:
        """The client has sent something: it is alive."""
        client.last_seen = time.monotonic()

    def subscribe(self, client: Client, characteristic_ids: list[int]) -> bool:
        """Send the client the events of these characteristics from now on; False (and nothing
        changed) if that would make more than MAX_SUBSCRIPTIONS."""
        if client not in self._clients:
            return True
        if len(client.subscriptions.union(characteristic_ids)) > MAX_SUBSCRIPTIONS:
            return False
        for characteristic_id in characteristic_ids:
            client.subscriptions.add(characteristic_id)
            self._subscribers.setdefault(characteristic_id, set()).add(client)
        self._largest = max(self._largest, len(self._subscribers))
        return True

    def unsubscribe(self, client: Client, characteristic_ids: list[int]) -> None:
        """Stop sending the client the events of these characteristics."""
        for characteristic_id in characteristic_ids:
            client.subscriptions.discard(characteristic_id)
            subscribers = self._subscribers.get(characteristic_id)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self._subscribers[characteristic_id]
        if self._largest > SHRINK_FROM and len(self._subscribers) * 4 < self._largest:
            self._subscribers = dict(self._subscribers)
            self._largest = len(self._subscribers)

    def send(self, client: Client, text: str) -> None:
        """Queue a message for one client; a client whose queue is full is too slow and is dropped."""
        if client not in self._clients:
            return
        try:
            client.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1
            self.disconnect(client, f"too slow: {self.max_pending} messages waiting")
            client.websocket.transport.abort()  # it is not reading: a close frame would never get through

    def broadcast_to_characteristic(self, characteristic_id: int, text: str) -> int:
        """Queue a message for every subscriber of one characteristic; how many there are."""
        subscribers = list(self._subscribers.get(characteristic_id, ()))
        for client in subscribers:
            self.send(client, text)
        return len(subscribers)

    def broadcast_to_all(self, text: str) -> int:
        """Queue a message for every connected client; how many there are."""
        clients = list(self._clients)
        for client in clients:
            self.send(client, text)
        return len(clients)

    async def cleanup_loop(self) -> None:
        """Every heartbeat interval, close the clients silent for longer than the heartbeat timeout."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            now = time.monotonic()
            for client in [c for c in self._clients if now - c.last_seen > self.heartbeat_timeout]:
                self.disconnect(client, f"silent for more than {self.heartbeat_timeout:g} s")
                self._close_later(client, CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")

    async def close_all(self) -> None:
        """Close every connection (the gateway is stopping), bounded by the connections' close timeout."""
        for client in list(self._clients):
            self.disconnect(client, "the gateway is stopping")
            self._close_later(client, CLOSE_GOING_AWAY, "the gateway is stopping")
        if self._closing:
            await asyncio.wait(self._closing)

    def _close_later(self, client: Client, code: int, reason: str) -> None:
        # Closing waits for the client's close frame (bounded by close_timeout): never hold up the caller.
        task = asyncio.create_task(client.websocket.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _write(self, client: Client) -> None:
        while True:
            text = await client.outbox.get()
            try:
                await client.websocket.send(text)
            except ConnectionClosed as closed:
                self.dropped += 1
                self.disconnect(client, f"connection lost while sending ({closed})")
                return
            self.sent += 1
