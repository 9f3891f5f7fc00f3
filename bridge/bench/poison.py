"""The poison messages ``spc-bridge bench --poison`` mixes into the gauges' stream, in one catalogue.

Each kind is an input the bridge must turn into exactly one reject while the good readings around it
go on. A poison message takes the place of a good reading in a gauge's stream (its topic and seq);
the objects among them carry a ``"poison"`` key naming their kind (the bridge ignores other keys),
so a stored reject can be told apart from the rest by its payload alone.
"""

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

MARK = "poison"
MAX_FRACTION = 0.5  # a poison message is never the first of a gauge's stream: it may need the one before
YEAR_1 = "0001-01-01T00:00:00+01:00"
LONG_TS_DIGITS = 45  # fractional digits added to a gauge's own ts: over the 64 characters of the column


class Slot(NamedTuple):
    """Where a poison message goes instead of a good reading: that reading's topic, seq and ts, and
    the topic and seq of the last good reading the gauge sent."""

    topic: str
    seq: int
    ts: str
    last_topic: str
    last_seq: int


def _marked(kind: str, **fields: object) -> str:
    return json.dumps({**fields, MARK: kind})


# Payloads without a "poison" key, spelled once: kind_of recognises their stored (maybe cut) text.
FIXED = {
    "not-json": "not JSON {",
    "empty": "",
    "deep-json": "[" * 5000 + "]" * 5000,
    "huge-number": "1" + "0" * 400,
}

Build = Callable[[Slot], tuple[str, str]]  # a slot -> (topic, payload)


def _fixed(kind: str) -> Build:
    return lambda slot: (slot.topic, FIXED[kind])


CATALOGUE: dict[str, Build] = {
    **{kind: _fixed(kind) for kind in FIXED},
    "year-1": lambda s: (s.topic, _marked("year-1", value=10.0, ts=YEAR_1, seq=s.seq)),
    "long-ts": lambda s: (s.topic, _marked("long-ts", value=10.0, seq=s.seq,
                                           ts=s.ts[:-1] + "0" * LONG_TS_DIGITS + s.ts[-1])),
    "wrong-type": lambda s: (s.topic, _marked("wrong-type", value="10.5", ts=s.ts, seq=s.seq)),
    "huge-count": lambda s: (s.topic, _marked("huge-count", count=1e19, ts=s.ts, seq=s.seq)),
    "unconfigured-topic": lambda s: (s.topic + "/x", _marked("unconfigured-topic", value=10.0,
                                                             ts=s.ts, seq=s.seq)),
    # the last good reading's topic and seq with a value no gauge sends (its values are near 10)
    "seq-repeat": lambda s: (s.last_topic, _marked("seq-repeat", value=-999.0, ts=s.ts,
                                                   seq=s.last_seq)),
}
KINDS = tuple(CATALOGUE)


@dataclass(frozen=True)
class Mix:
    """What share of a gauge's messages are poison, and of which kinds (rotating)."""

    fraction: float
    kinds: tuple[str, ...] = KINDS


_GOLDEN = 0x9E3779B9  # 2**32 divided by the golden ratio


class Mixer:
    """One gauge's poison: which of its messages are poison, what each is, and how many of each."""

    def __init__(self, mix: Mix, start: int) -> None:
        self.mix = mix
        self.start = start  # gauges start the rotation at different kinds
        self.sent: Counter[str] = Counter()

    def due(self, k: int) -> bool:
        """Whether the gauge's ``k``-th message is poison: that fraction of them, scattered over the
        gauge's topics. An even stride (every 100th message) would land on the same few topics of a
        round-robin gauge, and the bridge stores only a topic's first rejects of each minute."""
        # k times the golden ratio, modulo 1, is spread evenly over every residue class of k
        return k > 0 and (k * _GOLDEN + self.start * 0x7F4A7C15) % 2**32 < self.mix.fraction * 2**32

    def message(self, slot: Slot) -> tuple[str, str]:
        """The next poison message, in the place of ``slot``: its topic and payload."""
        kinds = self.mix.kinds
        kind = kinds[(self.start + self.sent.total()) % len(kinds)]
        self.sent[kind] += 1
        return CATALOGUE[kind](slot)


_MARKED = re.compile(rf'"{MARK}": "([a-z0-9-]+)"')


def kind_of(payload: str) -> str | None:
    """The poison kind a reject's stored payload (perhaps cut short) came from; None if none."""
    found = _MARKED.search(payload)
    if found is not None:
        return found.group(1)
    for kind, text in FIXED.items():
        if payload == text or (payload and text.startswith(payload)):
            return kind
    return None


def parse_kinds(names: str) -> tuple[str, ...]:
    """``--poison-kinds``: comma-separated kinds of the catalogue; ValueError naming the unknown."""
    kinds = tuple(name.strip() for name in names.split(",") if name.strip())
    unknown = [name for name in kinds if name not in CATALOGUE]
    if unknown or not kinds:
        raise ValueError(f"unknown poison kind {', '.join(unknown) or '(none given)'}: "
                         f"choose among {', '.join(KINDS)}")
    return kinds


def unmatched(sent: Counter[str], rejected: Sequence[str]) -> str | None:
    """What differs between the poison sent and the payloads of the stored rejects, or None when
    every poison message is exactly one reject and nothing else was rejected."""
    found: Counter[str | None] = Counter(kind_of(payload) for payload in rejected)
    good = found.pop(None, 0)
    if found == sent and not good:
        return None
    kinds = sorted(set(sent) | {k for k in found if k is not None})
    detail = ", ".join(f"{kind} {found[kind]}/{sent[kind]}" for kind in kinds)
    return f"rejects per poison kind (stored/sent): {detail}; {good} rejects of good readings"
