"""Bisect a batch that fails to commit, so that one bad message is rejected alone and the rest commit.

A failed commit has two causes that call for opposite answers. With the database unreachable, no
message is at fault: the batch waits, unacknowledged, and is tried again later. With the database
reachable, some message of the batch cannot be processed (a value the engine or a column cannot
take, a bug): retrying it would stall every gauge behind it, so the batch is split in halves, each
committed on its own, down to the single message that keeps failing, which becomes a reject. A
batch of n messages with k bad ones costs about k·log2(n) extra commits.
"""

import logging
from collections.abc import Callable, Sequence
from typing import Generic, NamedTuple, TypeVar

log = logging.getLogger(__name__)
M = TypeVar("M")
E = TypeVar("E")
SINGLE_TRIES = 2  # commits of a lone message before it is rejected (a second try absorbs a fluke)


class Processed(NamedTuple, Generic[M, E]):
    """Outcome of a batch: events to publish, messages to acknowledge and messages to try again."""

    events: list[E]
    handled: list[M]   # committed or rejected, in arrival order: a prefix of the batch
    retry: list[M]     # not processed because the database is unreachable


def isolate(batch: Sequence[M], commit: Callable[[Sequence[M]], list[E]],
            reject: Callable[[M, Exception], list[E]],
            unavailable: Callable[[Exception], bool]) -> Processed[M, E]:
    """Commit ``batch``, bisecting it around messages that fail while the database is available.

    ``commit`` processes messages in one transaction and returns their events; ``reject`` records
    one message that cannot be processed and returns the events of its reject; ``unavailable``
    tells whether a failure means the database cannot be used for now (down, locked, a deadlock).
    """
    events: list[E] = []
    handled: list[M] = []

    def run(part: Sequence[M]) -> bool:
        """Process ``part``; False once the database turns out to be unreachable."""
        tries = SINGLE_TRIES if len(part) == 1 else 1
        for attempt in range(tries):
            try:
                events.extend(commit(part))
            except Exception as error:
                if unavailable(error):
                    log.warning("database unreachable (%s: %s); %d message(s) wait to be retried",
                                type(error).__name__, error, len(batch) - len(handled))
                    return False
                failure = error
                continue
            handled.extend(part)
            return True
        if len(part) > 1:
            half = len(part) // 2
            return run(part[:half]) and run(part[half:])
        try:
            events.extend(reject(part[0], failure))
        except Exception as error:
            if unavailable(error):
                return False
            # The reject itself cannot be stored: the message is dropped, loudly, rather than stall.
            log.exception("could not record the reject of a message that cannot be processed (%r)", part[0])
        handled.extend(part)
        return True

    if batch:
        run(batch)
    return Processed(events, handled, list(batch[len(handled):]))
