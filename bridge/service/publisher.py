"""Publish committed events in outbox order, at least once, without unbounded memory.

Events are handed over after their commit and sent at QoS 1 with at most ``window`` awaiting
their PUBACK (paho fails past 65,535 unacknowledged messages, and a larger window was slower).
paho resends what is in flight after a reconnect; what a crash loses is still in the outbox and is
sent again on start. The highest seq below which every event is confirmed is
``confirmed_up_to``: the outbox rows up to it can be deleted. When more than ``memory`` events
wait (the broker is away), the rest stay only in the database and are read back in order.
"""

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from queue import Empty, SimpleQueue

from bridge.service.messages import Outgoing

LOAD_CHUNK = 5000


class Publisher:
    """Keeps events flowing from the outbox to the broker, in order."""

    def __init__(self, send: Callable[[str, str, bool], int | None],
                 load_after: Callable[[int, int], list[Outgoing]],
                 window: int = 1000, memory: int = 50_000) -> None:
        self._send = send
        self._load_after = load_after
        self.window = window
        self.memory = memory
        self.waiting: deque[Outgoing] = deque()
        self._spilled_after: int | None = None  # events after this seq are only in the outbox
        self._outstanding: OrderedDict[int, bool] = OrderedDict()  # seq -> confirmed
        self._seq_of_mid: dict[int, int] = {}
        self.confirmations: SimpleQueue[int] = SimpleQueue()  # mids, from the network thread
        self.confirmed_up_to = 0
        self.confirmed_at = time.monotonic()  # when confirmed_up_to last advanced (or the start)
        self.published = 0  # events the broker has confirmed
        self._last_seq = 0  # of the latest event handed over

    def add(self, events: Sequence[Outgoing]) -> None:
        """Queue committed events (in seq order)."""
        if not events:
            return
        self._last_seq = events[-1].seq
        if self._spilled_after is None and len(self.waiting) + len(events) > self.memory:
            self._spilled_after = events[0].seq - 1
        if self._spilled_after is None:
            self.waiting.extend(events)

    @property
    def idle(self) -> bool:
        """True when every event handed over has been confirmed by the broker."""
        return not self.waiting and not self._outstanding and self._spilled_after is None

    @property
    def depth(self) -> int:
        """Events handed over and not yet confirmed by the broker, in memory or only in the outbox."""
        after = self._spilled_after  # read once: the metrics thread asks while the bridge's changes it
        return len(self.waiting) + len(self._outstanding) + (self._last_seq - after if after is not None else 0)

    def pump(self) -> None:
        """Record confirmations and send as many waiting events as the window allows."""
        self._take_confirmations()
        while len(self._outstanding) < self.window:
            if not self.waiting and self._spilled_after is not None:
                rows = self._load_after(self._spilled_after, LOAD_CHUNK)
                self.waiting.extend(rows)
                self._spilled_after = rows[-1].seq if len(rows) == LOAD_CHUNK else None
            if not self.waiting:
                return
            event = self.waiting[0]
            mid = self._send(event.topic, event.payload, event.retain)
            if mid is None:
                return  # not connected: try again later
            self.waiting.popleft()
            self._outstanding[event.seq] = False
            self._seq_of_mid[mid] = event.seq

    def _take_confirmations(self) -> None:
        while True:
            try:
                mid = self.confirmations.get_nowait()
            except Empty:
                break
            seq = self._seq_of_mid.pop(mid, None)
            if seq is not None:
                self._outstanding[seq] = True
                self.published += 1
        advanced = self.confirmed_up_to
        while self._outstanding:
            seq, confirmed = next(iter(self._outstanding.items()))
            if not confirmed:
                break
            self._outstanding.popitem(last=False)
            self.confirmed_up_to = seq
        if self.confirmed_up_to != advanced:
            self.confirmed_at = time.monotonic()
