"""Commands per user per second: a token bucket per user, so no one user's flood costs the others.

Each user has up to BURST tokens and gains RATE_PER_S a second; a command takes one. A user with
no token left is told ``busy`` with the time until the next one. A bucket that has filled up again
is the same as none, so the buckets of idle users are dropped once there are many.
"""

import time
from collections.abc import Callable

RATE_PER_S = 10.0   # commands a second a user may keep up
BURST = 20          # commands a user may send at once after a quiet moment
PRUNE_AT = 10_000   # buckets kept before the full ones are dropped


class Budget:
    """Token buckets by user name; ``clock`` gives seconds (time.monotonic, or a test's own)."""

    def __init__(self, rate: float = RATE_PER_S, burst: int = BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, when counted)
        self._prune_at = PRUNE_AT

    def take(self, user: str) -> bool:
        """Spend one of ``user``'s tokens; False (and nothing spent) if there is none."""
        now = self._clock()
        tokens = self._tokens(user, now)
        if tokens < 1:
            self._buckets[user] = (tokens, now)
            return False
        self._buckets[user] = (tokens - 1, now)
        if len(self._buckets) > self._prune_at:
            self._prune(now)
        return True

    def refund(self, user: str) -> None:
        """Give back a token :meth:`take` spent on what was then not done (its batch was rolled back)."""
        now = self._clock()
        self._buckets[user] = (min(float(self.burst), self._tokens(user, now) + 1), now)

    def wait(self, user: str) -> float:
        """Seconds until ``user`` has a token again (0 if it has one)."""
        return max(0.0, (1 - self._tokens(user, self._clock())) / self.rate)

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, user: str, now: float) -> float:
        tokens, then = self._buckets.get(user, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - then) * self.rate)

    def _prune(self, now: float) -> None:
        self._buckets = {user: bucket for user, bucket in self._buckets.items()
                         if self._tokens(user, now) < self.burst}
        # if most users are busy right now, prune again only once there are twice as many
        self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))
