"""Missed samples: a characteristic that declares ``expected_interval`` is overdue when no reading has
arrived for that long plus its ``interval_tolerance``; it is reported once per gap."""

import heapq
import time
from collections.abc import Callable

from bridge.service.registry import Characteristic


class MissedSamples:
    """When each watched characteristic's next reading is due, and which are overdue.

    The heap holds at most one entry per characteristic, checked when it comes due: a reading only
    moves the characteristic's last time, so a fast gauge costs no heap operation per reading.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[int, float] = {}  # by watched characteristic: when its last reading arrived
        self._after: dict[int, float] = {}  # by watched characteristic: seconds without a reading that are a miss
        self._heap: list[tuple[float, int]] = []  # (when to look again, characteristic)
        self._scheduled: set[int] = set()
        self._watched: dict[int, Characteristic] = {}

    def watch(self, ch: Characteristic, interval: float | None, tolerance: float) -> None:
        """Expect a reading of ``ch`` every ``interval`` seconds (None: stop expecting), from now."""
        if interval is None:
            for table in (self._watched, self._last, self._after):
                table.pop(ch.id, None)
            return
        self._watched[ch.id] = ch
        self._after[ch.id] = interval + tolerance
        self.reading(ch.id)

    def reading(self, characteristic_id: int) -> None:
        """A reading of the characteristic arrived (ignored unless it is watched)."""
        after = self._after.get(characteristic_id)
        if after is None:
            return
        now = self._clock()
        self._last[characteristic_id] = now
        if characteristic_id not in self._scheduled:
            self._scheduled.add(characteristic_id)
            heapq.heappush(self._heap, (now + after, characteristic_id))

    def report_again(self, characteristic_id: int) -> None:
        """Report an overdue characteristic again at the next look (its report could not be stored)."""
        if characteristic_id in self._watched:
            self._last[characteristic_id] = self._clock() - self._after[characteristic_id]
            if characteristic_id not in self._scheduled:
                self._scheduled.add(characteristic_id)
                heapq.heappush(self._heap, (self._clock(), characteristic_id))

    def overdue(self) -> list[tuple[Characteristic, float]]:
        """The characteristics whose reading is overdue, with the seconds that make a miss, each reported
        once until its next reading."""
        now = self._clock()
        out: list[tuple[Characteristic, float]] = []
        while self._heap and self._heap[0][0] <= now:
            _, cid = heapq.heappop(self._heap)
            self._scheduled.discard(cid)
            if cid not in self._watched:
                continue
            due = self._last[cid] + self._after[cid]
            if due > now:
                self._scheduled.add(cid)
                heapq.heappush(self._heap, (due, cid))
            else:
                out.append((self._watched[cid], self._after[cid]))
        return out
