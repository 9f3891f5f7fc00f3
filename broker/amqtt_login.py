"""Logging in to the embedded broker: the client-id rule (broker.identity), password hashes verified off the
event loop, and failed logins throttled per remote address.

amqtt's own FileAuthPlugin verifies the argon2 hash on the broker's event loop: each CONNECT stops every
other client for about 25 ms, and 500 wrong-password CONNECTs held readings back by 3 s. `PasswordLoginPlugin`
checks the client id first (no hashing), refuses at once an address that failed too often lately, and
verifies in a small thread pool (argon2 releases the GIL), one CONNECT per address at a time, so that a flood
from one address costs a few hashes and never the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from amqtt.contexts import BaseContext
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session
from pwdlib.hashers.argon2 import Argon2Hasher

from broker.identity import may_use_client_id, refusal
from broker.users import UserDirectory

__all__ = ["LoginThrottle", "PasswordLoginPlugin"]

_logger = logging.getLogger(__name__)

MAX_FAILURES = 5
WINDOW_S = 60.0
BACKOFF_S = 60.0
# Hashing threads: two cores here; more would let a flood from many addresses take every core.
_HASH_WORKERS = 2
# Addresses remembered at most; beyond it the oldest that are not refused are forgotten.
_MAX_ADDRESSES = 10_000


class LoginThrottle:
    """Failed logins per remote address: after `max_failures` within `window` seconds, that address is refused
    for `backoff` seconds (counted from its last failure), without its password being looked at."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_S, backoff: float = BACKOFF_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window, self.backoff, self._clock = max_failures, window, backoff, clock
        self._failures: dict[str, deque[float]] = {}

    def refused_for(self, address: str) -> float:
        """Seconds for which `address` is still refused (0: it may try)."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        now = self._clock()
        if len(failures) >= self.max_failures:
            left = failures[-1] + self.backoff - now
            if left > 0:
                return left
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return 0.0

    def failed(self, address: str) -> bool:
        """Count a failed login from `address`; whether that address is refused from now on."""
        if address not in self._failures and len(self._failures) >= _MAX_ADDRESSES:
            self._forget_some()
        failures = self._failures.setdefault(address, deque(maxlen=self.max_failures))
        failures.append(self._clock())
        return self.refused_for(address) > 0

    def _forget_some(self) -> None:
        for address in list(self._failures):
            self.refused_for(address)  # drops the addresses whose failures are all older than the window
        while len(self._failures) >= _MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]


class PasswordLoginPlugin(BaseAuthPlugin):
    """User name, password (argon2, the users directory's amqtt.passwd) and client id, checked as the module
    docstring says; replaces amqtt's FileAuthPlugin."""

    @dataclass
    class Config:
        """The users directory (broker.users) and the throttle's limits."""

        users: str = ""
        max_failures: int = MAX_FAILURES
        window: float = WINDOW_S
        backoff: float = BACKOFF_S

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        config = cast("PasswordLoginPlugin.Config", self.config)
        self._hashes = UserDirectory.password_hashes(UserDirectory(Path(config.users)).amqtt_passwords)
        self._hasher = Argon2Hasher()
        self._throttle = LoginThrottle(config.max_failures, config.window, config.backoff)
        self._executor = ThreadPoolExecutor(_HASH_WORKERS, thread_name_prefix="password-hash")
        self._busy: dict[str, tuple[asyncio.Lock, int]] = {}

    async def authenticate(self, *, session: Session) -> bool:
        """Whether the CONNECT of `session` may go on."""
        user, address = session.username, session.remote_address or "?"
        if not user:
            return False
        if not may_use_client_id(user, session.client_id or ""):
            _logger.warning("%s (from %s)", refusal(user, session.client_id or ""), address)
            return False
        async with self._one_at_a_time(address):
            if self._throttle.refused_for(address) > 0:
                return False
            stored = self._hashes.get(user)
            password = session.password or ""
            good = stored is not None and await asyncio.get_running_loop().run_in_executor(
                self._executor, self._hasher.verify, password, stored)
            if not good and self._throttle.failed(address):
                _logger.warning("%d failed logins from %s within %g s: its CONNECTs are refused for %g s",
                                self._throttle.max_failures, address, self._throttle.window, self._throttle.backoff)
            return good

    @asynccontextmanager
    async def _one_at_a_time(self, address: str) -> AsyncIterator[None]:
        """Hold the lock of `address`: its CONNECTs are verified one after the other, so the throttle counts
        each failure before the next one is hashed."""
        lock, holders = self._busy.get(address, (asyncio.Lock(), 0))
        self._busy[address] = (lock, holders + 1)
        try:
            async with lock:
                yield
        finally:
            lock, holders = self._busy[address]
            if holders == 1:
                del self._busy[address]
            else:
                self._busy[address] = (lock, holders - 1)

    async def close(self) -> None:
        """Stop the hashing threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
