"""Recording a reject: logged, stored and published in full within its topic's budget, else counted."""

import logging
from datetime import datetime
from typing import Any

from bridge.contract import ERRORS_TOPIC
from bridge.ingest import iso_utc
from bridge.service import events
from bridge.service.batch import Batch
from bridge.service.reject_limits import RejectLimiter
from bridge.store.schema import TOPIC_CHARS

log = logging.getLogger(__name__)
REJECT_PAYLOAD_CHARS = 4096
REASON_CHARS = 1000


def reject_row(topic: str, reason: str, payload: bytes, received_at: datetime) -> dict[str, Any]:
    """A row of the rejects table: the topic and reason, cut to their columns, and the payload's start."""
    return {
        "topic": topic[:TOPIC_CHARS], "reason": reason[:REASON_CHARS], "received_at": received_at,
        "payload": events.payload_text(payload, REJECT_PAYLOAD_CHARS),
    }


def record(limits: RejectLimiter, batch: Batch, topic: str, reason: str, payload: bytes,
           received_at: datetime, kind: str | None) -> None:
    """Store and publish a reject in ``batch``, unless its topic has had its full rejects this
    window; count it by ``kind`` (None: a summary of rejects counted before, not a reject itself)."""
    if kind is not None:
        batch.classes[kind] += 1
    budget = limits.key(topic)
    if not limits.admit(budget, batch.now, batch.full):
        batch.suppressed[budget] += 1
        return
    batch.full[budget] += 1
    log.warning("reject on %s: %s", topic[:200], reason, extra={"topic": topic[:200], "reason": reason})
    batch.rejects.append(reject_row(topic, reason, payload, received_at))
    batch.event(ERRORS_TOPIC, events.error_event(topic, reason, payload, iso_utc(received_at)))


def summaries(limits: RejectLimiter, batch: Batch, now: datetime) -> None:
    """Rejects of topics whose window of full rejects is over, counting what was not stored."""
    for topic, suppressed in limits.ended(batch.now):
        if suppressed:
            reason = (f"{suppressed} more rejects on this topic were counted but not stored: only the"
                      f" first {limits.full_per_window} each {limits.window_s:g} s are")
            record(limits, batch, topic, reason, b"", now, None)
