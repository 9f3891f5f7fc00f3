"""The per-user command budget (token buckets) and the JSON depth scan, on a clock the test moves."""

import json

import pytest

from bridge.jsondepth import deeper_than
from bridge.service.budget import PRUNE_AT, Budget


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    """20 at once, then one every 0.1 s; users do not share tokens."""
    clock = Clock()
    budget = Budget(rate=10, burst=20, clock=clock)
    assert [budget.take("a") for _ in range(21)] == [True] * 20 + [False]
    assert budget.take("b")
    assert budget.wait("a") == pytest.approx(0.1)
    clock.now += 0.05
    assert not budget.take("a")
    clock.now += 0.06
    assert budget.take("a") and not budget.take("a")
    clock.now += 60
    assert sum(budget.take("a") for _ in range(30)) == 20  # refilled to the burst, no further


def test_idle_users_are_forgotten() -> None:
    """Past PRUNE_AT users, the buckets that have filled up again are dropped; busy ones are kept."""
    clock = Clock()
    budget = Budget(rate=10, burst=20, clock=clock)
    for _ in range(20):
        budget.take("flooder")
    for user in range(PRUNE_AT - 1):
        budget.take(f"user{user}")
    clock.now += 0.5  # the flooder has 5 tokens back; the others have their 20 again
    budget.take("one more")
    assert len(budget) == 2
    assert [budget.take("flooder") for _ in range(20)].count(True) == 5


@pytest.mark.parametrize(("document", "limit", "deeper"), [
    (b"[[[1]]]", 3, False),
    (b"[[[1]]]", 2, True),
    (b'{"a": "[[[[[[[[[["}', 1, False),  # brackets in strings do not count
    (b'["\\"[[[[", {"b": [1]}]', 3, False),  # nor after an escaped quote
    (b'["\\"[[[[", {"b": [[1]]}]', 3, True),
    (b"[" * 30_000, 8, True),
    (b'"' + b'\\"' * 30_000 + b"[[[[", 2, False),  # an unterminated string, scanned in linear time
])
def test_depth(document: bytes, limit: int, deeper: bool) -> None:
    """What json would find too deep, without json."""
    assert deeper_than(document, limit) is deeper
    assert deeper_than(document.decode(), limit) is deeper


def test_depth_agrees_with_json() -> None:
    """On valid documents the scan and the parser agree on the depth."""
    for depth in range(1, 12):
        document = json.dumps({"x": "[{]" * depth, "y": [[1, "]"]] * 2}).encode()
        for _ in range(depth):
            document = b'{"k": [' + document + b"]}"
        actual = 2 * depth + 3  # each wrapper adds an object and an array; the core has {..} [[..]]
        assert json.loads(document)
        assert not deeper_than(document, actual) and deeper_than(document, actual - 1)
