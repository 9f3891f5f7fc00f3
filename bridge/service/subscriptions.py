"""The ingest subscriptions: a few wildcard roots that together cover every characteristic's topic.

One filter per characteristic is 10,000 subscriptions for a big plant, more than some brokers grant a
session (NATS: 63). The bridge subscribes to roots instead: the ``ingest_roots`` of the characteristics
file, or one ``<first level>/#`` per first topic level. The first level is the coarsest grouping that
never reaches the bridge's own ``spc/...`` topics (no characteristic topic starts with ``spc/``).
"""

from collections import Counter
from collections.abc import Collection, Iterable

from paho.mqtt.matcher import MQTTMatcher

from bridge.contract import ROOT

MAX_FILTER_BYTES = 65535  # an MQTT UTF-8 string
SHOWN = 5  # topics named in one error message at most


def derive_roots(topics: Iterable[str]) -> list[str]:
    """One ``<first level>/#`` per first level of ``topics`` (``a/#`` also matches ``a`` itself)."""
    roots = sorted({f"{topic.split('/', 1)[0]}/#" for topic in topics})
    for root in roots:
        problem = filter_problem(root)
        if problem is not None:
            raise ValueError(problem)
    return roots


def filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` cannot be an ingest root, or None when it can."""
    shown = repr(topic_filter)
    if not topic_filter:
        return "an empty filter: give e.g. 'plant1/#'"
    if "\0" in topic_filter or len(topic_filter.encode("utf-8")) > MAX_FILTER_BYTES:
        return f"{shown} is not an MQTT topic filter (a U+0000 character or over {MAX_FILTER_BYTES} bytes)"
    if topic_filter.startswith("$"):
        return f"{shown} starts with '$', which brokers reserve for themselves"
    levels = topic_filter.split("/")
    for position, level in enumerate(levels):
        if ("#" in level and (level != "#" or position != len(levels) - 1)) or ("+" in level and level != "+"):
            return (f"{shown} is not a valid filter: '+' must be a whole level and '#' the whole "
                    "last level, e.g. 'plant1/+/gauges/#'")
    if levels[0] in ("#", "+", ROOT):
        return (f"{shown} would also catch the bridge's own {ROOT}/... events: start it with the "
                "first level of your gauges' topics, e.g. 'plant1/#'")
    return None


def roots_problems(roots: Collection[str], topics: Iterable[str]) -> list[str]:
    """What is wrong with ``roots`` as the ingest roots of characteristics on ``topics``: each root
    a valid filter that covers some topic, each topic under exactly one root (two would deliver its
    readings twice)."""
    problems = [p for p in map(filter_problem, roots) if p is not None]
    repeated = sorted(repr(root) for root, count in Counter(roots).items() if count > 1)
    if repeated:
        problems.append(f"{', '.join(repeated)} given more than once")
    if problems:
        return problems
    order = list(roots)
    matcher = MQTTMatcher()
    for root in roots:
        matcher[root] = root
    used: set[str] = set()
    uncovered: list[str] = []
    doubled: list[str] = []
    for topic in topics:
        matching = sorted(matcher.iter_match(topic), key=order.index)
        used.update(matching)
        if not matching:
            uncovered.append(topic)
        elif len(matching) > 1:
            doubled.append(f"{topic!r} ({' and '.join(map(repr, matching))})")
    if uncovered:
        problems.append(f"{len(uncovered)} characteristic topic(s) under no root, e.g. "
                        f"{', '.join(map(repr, uncovered[:SHOWN]))}: add a root that covers them")
    if doubled:
        problems.append(f"{len(doubled)} topic(s) under two roots, e.g. {', '.join(doubled[:SHOWN])}: "
                        "their readings would arrive twice; keep roots that do not overlap")
    unused = [repr(root) for root in roots if root not in used]
    if unused:
        problems.append(f"{', '.join(unused)} cover(s) no characteristic's topic: remove it or fix the topic")
    return problems
