"""How many rejects of one topic are stored and published in full: the first few a minute, the rest counted.

A gauge gone wrong, or a hostile client, may send thousands of bad messages a second; storing and
publishing each would fill the database and drown ``spc/bridge/errors``. Each topic gets
``FULL_PER_WINDOW`` full rejects per ``WINDOW_S``; past that its rejects are counted, and when its
window ends the count becomes one summary reject. Topics past ``MAX_TOPICS`` share one budget, so
that the table of counts stays bounded whatever topics a client invents.
"""

from collections import Counter
from dataclasses import dataclass

FULL_PER_WINDOW = 20
WINDOW_S = 60.0
MAX_TOPICS = 10_000
OTHER_TOPICS = "*"  # the shared budget's key


@dataclass(slots=True)
class _Window:
    started: float
    full: int = 0
    suppressed: int = 0


class RejectLimiter:
    """Decides per topic whether a reject is kept in full; counts the others.

    Decisions of a batch are tentative until :meth:`commit`, so a batch that fails and is tried
    again is not counted twice.
    """

    def __init__(self, full_per_window: int = FULL_PER_WINDOW, window_s: float = WINDOW_S,
                 max_topics: int = MAX_TOPICS) -> None:
        self.full_per_window = full_per_window
        self.window_s = window_s
        self.max_topics = max_topics
        self._windows: dict[str, _Window] = {}
        self.suppressed_total = 0

    def key(self, topic: str) -> str:
        """The budget ``topic`` counts against."""
        return topic if topic in self._windows or len(self._windows) < self.max_topics else OTHER_TOPICS

    def admit(self, key: str, now: float, pending: Counter[str]) -> bool:
        """Whether a reject on ``key`` is kept in full, given the batch's ``pending`` full ones."""
        window = self._windows.get(key)
        used = window.full if window is not None and now - window.started < self.window_s else 0
        return used + pending[key] < self.full_per_window

    def commit(self, now: float, full: Counter[str], suppressed: Counter[str]) -> None:
        """Record a committed batch's full and suppressed rejects."""
        for key in full.keys() | suppressed.keys():
            window = self._windows.get(key)
            if window is None or now - window.started >= self.window_s:
                window = self._windows[key] = _Window(now)
            window.full += full[key]
            window.suppressed += suppressed[key]
        self.suppressed_total += sum(suppressed.values())

    def ended(self, now: float) -> list[tuple[str, int]]:
        """Topics whose window is over, with the count of rejects suppressed in it; forgets them."""
        over = [key for key, w in self._windows.items() if now - w.started >= self.window_s]
        return [(key, self._windows.pop(key).suppressed) for key in over]
