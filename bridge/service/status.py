"""The retained ``spc/<id>/status`` of each characteristic, one board for every source of its state.

It says where the characteristic stands without asking for history: its phase, whether its last sample
was in control, its open violations, when its last sample arrived, its Cpk, and whether it is stale and
why (its Sparkplug edge node or device died, or a sample is overdue). A change of state is published
within STATUS_MIN_S; a new last sample alone at most every STATUS_REFRESH_S, so a busy characteristic
costs one status event a minute, not one per sample.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bridge.contract import StatusEvent, status_topic
from bridge.service.messages import Event
from bridge.service.registry import Characteristic

DEATH, MISSED = "sparkplug", "missed"  # what holds a characteristic stale: a Sparkplug death, an overdue sample
STATUS_MIN_S = 1.0       # between two status events of a characteristic whose state changed
STATUS_REFRESH_S = 60.0  # between two whose only news is a later last sample


@dataclass(slots=True)
class _Entry:
    """What the board knows of one characteristic."""

    ch: Characteristic
    in_control: bool | None = None
    last_sample_at: str | None = None
    open_violations: int = 0
    stale: dict[str, str] = field(default_factory=dict)  # by source (sparkplug, missed): why
    published_at: float = -1e18  # monotonic time of its last status event
    changed: bool = False  # its state changed since (not only its last sample)
    refreshed: bool = False  # a later last sample since


class StatusBoard:
    """The status of every characteristic, and the events that publish it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[int, _Entry] = {}
        self._clock = clock

    def _entry(self, ch: Characteristic) -> _Entry:
        entry = self._entries.get(ch.id)
        if entry is None:
            entry = self._entries[ch.id] = _Entry(ch)
        elif entry.ch is not ch:
            entry.ch, entry.changed = ch, True  # changed by a command: its phase or Cpk may have too
        return entry

    def forget(self, characteristic_id: int) -> None:
        """Drop a retired characteristic."""
        self._entries.pop(characteristic_id, None)

    def open_violations(self, counts: dict[int, int], characteristics: Iterable[Characteristic]) -> None:
        """Set the open violations of each characteristic (at start)."""
        for ch in characteristics:
            if counts.get(ch.id):
                self._entry(ch).open_violations = counts[ch.id]

    def sample(self, ch: Characteristic, in_control: bool | None, received_at: str) -> None:
        """A sample of ``ch`` was evaluated."""
        entry = self._entry(ch)
        if in_control != entry.in_control or entry.last_sample_at is None:
            entry.changed = True
        entry.in_control, entry.last_sample_at, entry.refreshed = in_control, received_at, True

    def violations(self, ch: Characteristic, change: int) -> None:
        """``change`` violations of ``ch`` opened (positive) or were acknowledged (negative)."""
        entry = self._entry(ch)
        entry.open_violations = max(0, entry.open_violations + change)
        entry.changed = True

    def limits_changed(self, ch: Characteristic) -> None:
        """``ch``'s limits changed: its phase or Cpk may have."""
        self._entry(ch).changed = True

    def set_stale(self, ch: Characteristic, source: str, reason: str | None) -> bool:
        """``ch`` is stale for ``reason`` from ``source``, or no longer for that source (None); True if
        that changes whether or why it is stale."""
        entry = self._entry(ch)
        if entry.stale.get(source) == reason:
            return False
        if reason is None:
            del entry.stale[source]
        else:
            entry.stale[source] = reason
        entry.changed = True
        return True

    def is_stale(self, characteristic_id: int, source: str) -> bool:
        """Whether ``source`` holds the characteristic stale."""
        entry = self._entries.get(characteristic_id)
        return entry is not None and source in entry.stale

    def event(self, ch: Characteristic, timestamp: str) -> Event:
        """``ch``'s status event now (and it counts as published)."""
        entry = self._entry(ch)
        entry.published_at, entry.changed, entry.refreshed = self._clock(), False, False
        evaluator = ch.assembler.evaluator
        indices = evaluator.capability()
        payload = StatusEvent(
            characteristic_id=ch.id, stale=bool(entry.stale),
            stale_reason="; ".join(entry.stale.values()) if entry.stale else None, timestamp=timestamp,
            phase=evaluator.phase,  # type: ignore[arg-type]
            in_control=entry.in_control, open_violations=entry.open_violations,
            last_sample_at=entry.last_sample_at, cpk=indices.cpk if indices is not None else None,
        ).model_dump_json()
        return Event(status_topic(ch.id), payload, True)

    def republish(self, unpublished: Iterable[Event]) -> None:
        """Status events that could not be stored: publish them at the next look."""
        for event in unpublished:
            entry = self._entries.get(int(event.topic.split("/")[1]))
            if entry is not None:
                entry.changed, entry.published_at = True, -1e18

    def due(self, timestamp: str) -> list[Event]:
        """The status events due now: of changed characteristics last published STATUS_MIN_S ago or more,
        and of those with only a later sample, STATUS_REFRESH_S ago or more."""
        now = self._clock()
        return [self.event(entry.ch, timestamp) for entry in list(self._entries.values())
                if (entry.changed and now - entry.published_at >= STATUS_MIN_S)
                or (entry.refreshed and now - entry.published_at >= STATUS_REFRESH_S)]
