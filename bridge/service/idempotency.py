"""What identifies a reading (its key) and what it says (its digest): how a resend is told from a new reading.

A reading's key is its ``seq``/``id`` when the gauge gives one, else its timestamp when the gauge
gives one, compared as the instant it names (``...Z`` and ``...+00:00`` are the same). ``seq``
compares as text: ``17`` and ``"17"`` are the same seq. A reading with neither has no key: only
its delivery can tell a resend (docs/design.md, "Nothing lost, nothing doubled").

The digest covers what the reading says: its measurements or count and n, and the instant of its
timestamp when the gauge gave one. The same key with the same digest is the same reading sent again; the same key
with another digest is a conflict, rejected.
"""

import hashlib

from pydantic_core import to_json

from bridge.ingest import Reading


def reading_key(reading: Reading) -> str | None:
    """The key that identifies ``reading`` among its characteristic's readings, if it has one."""
    if reading.seq is not None:
        return "seq:" + reading.seq
    if reading.stamped:
        return "ts:" + reading.time.isoformat()
    return None


def describe_key(key: str) -> str:
    """``seq 17`` or ``ts 2026-11-26T10:00:00+00:00``: a key as a reject reason names it."""
    kind, _, value = key.partition(":")
    return f"{kind} {value}"


def reading_digest(reading: Reading) -> str:
    """A short digest of what ``reading`` says (not of its delivery)."""
    content = (reading.values, reading.count, reading.n, reading.time.isoformat() if reading.stamped else None)
    return hashlib.blake2b(to_json(content), digest_size=8).hexdigest()
