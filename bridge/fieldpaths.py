"""Read a reading out of vendor JSON with JMESPath field paths (Kepware IoT Gateway, Node-RED, ...).

A characteristic on such a topic names where its reading is in the decoded document: ``value_path``
(the measurement, a whole subgroup as a list, or an attribute chart's count), and optionally
``timestamp_path`` (ISO 8601, or seconds or milliseconds since 1970 by ``timestamp_unit``),
``quality_path`` (a reading whose quality is not one of ``good_quality`` is refused), ``n_path`` (an
attribute chart's sample size) and ``seq_path`` (the reading's identifier). Each part is checked by
bridge.ingest's own checks, so that a reading read here has the bounds of a JSON reading.

Expressions are jmespath's, evaluated by the jmespath library, with one shortcut: a filter on a tag id
(``values[?id=='Channel1.Device1.Bore'] ...``, Kepware's shape) is answered from an index of the tags
built once per message (JsonDocument), not by comparing every tag for every characteristic: the same
result, in one pass over a message of a hundred tags instead of a hundred passes. And the simplest nodes
of the syntax tree jmespath parsed (a field, an index, their chains and pipes: ``.v | [0]``) are evaluated
as jmespath's interpreter evaluates them, without building an interpreter per search.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Callable
from typing import Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError, LexerError
from jmespath.functions import Functions
from jmespath.parser import ParsedResult

from bridge.ingest import (IngestError, Reading, epoch_timestamp, iso_utc, measurement, seq_text, subgroup,
                           timestamp, whole_number)

TimestampUnit = Literal["iso", "s", "ms"]
Quality = bool | int | float | str  # a JSON scalar a good quality equals
SHOWN_CHARS = 60  # of a selected value quoted in a reason

_FUNCTIONS = Functions().FUNCTION_TABLE
Evaluate = Callable[[Any], Any]
_CHAINS = ("subexpression", "index_expression", "pipe")  # each child applied to the one before's result


def _field(name: str) -> Evaluate:
    return lambda value: value.get(name) if isinstance(value, dict) else None


def _index(at: int) -> Evaluate:
    return lambda value: value[at] if isinstance(value, list) and -len(value) <= at < len(value) else None


def _chain(steps: list[Evaluate]) -> Evaluate:
    def run(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value
    return run


def _native(node: dict[str, Any]) -> Evaluate | None:
    """``node`` as a plain function when it is made of fields, indexes, the current node and their chains
    (jmespath's visit_field, visit_index, visit_subexpression, visit_index_expression, visit_pipe); None otherwise."""
    kind = node["type"]
    if kind in ("identity", "current"):
        return lambda value: value
    if kind == "field":
        return _field(node["value"])
    if kind == "index":
        return _index(node["value"])
    if kind in _CHAINS:
        steps = [_native(child) for child in node["children"]]
        return None if any(step is None for step in steps) else _chain(steps)  # type: ignore[arg-type]
    return None


def evaluator(tree: dict[str, Any]) -> Evaluate:
    """What evaluates the syntax tree ``tree`` of jmespath on a decoded document: a plain function where
    _native has one, else jmespath's interpreter."""
    native = _native(tree)
    return native if native is not None else ParsedResult("", tree).search


def _functions_problem(node: dict[str, Any]) -> str | None:
    """An unknown function or a wrong number of arguments anywhere in a parsed expression: jmespath
    finds these only when the expression is evaluated, that is on every message."""
    if node.get("type") == "function_expression":
        name, given = node["value"], len(node["children"])
        if name not in _FUNCTIONS:
            return f"unknown function {name}()"
        signature = _FUNCTIONS[name]["signature"]
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if given < len(signature) or (given > len(signature) and not variadic):
            wanted = f"{'at least ' if variadic else ''}{len(signature)}"
            return f"function {name}() takes {wanted} argument(s), given {given}"
    for child in node.get("children", ()):
        problem = _functions_problem(child) if isinstance(child, dict) else None
        if problem is not None:
            return problem
    return None


class JsonDocument:
    """A decoded JSON document, and the tag lookups its characteristics' paths built in it: several
    characteristics reading one message share one pass over its list of tags (Kepware's ``values``)."""

    __slots__ = ("value", "_indexes")

    def __init__(self, value: Any) -> None:
        self.value = value
        self._indexes: dict[tuple[str, str], dict[str, list[Any]] | None] = {}

    def tags(self, lookup: "_TagLookup") -> dict[str, list[Any]] | None:
        """The elements of the list ``lookup.base`` selects, by their string ``lookup.key`` (None if no list)."""
        cache_key = (lookup.base_key, lookup.key)
        if cache_key not in self._indexes:
            base = lookup.base(self.value)
            index: dict[str, list[Any]] | None = None
            if isinstance(base, list):
                index = {}
                for element in base:
                    tag = element.get(lookup.key) if isinstance(element, dict) else None
                    if isinstance(tag, str):
                        index.setdefault(tag, []).append(element)
            self._indexes[cache_key] = index
        return self._indexes[cache_key]


@dataclass(frozen=True, slots=True)
class _TagLookup:
    """``base[?key=='literal'].right``, a filter on one tag id, answered from a JsonDocument's index
    instead of comparing every element (jmespath would, for each characteristic on the topic)."""

    base: Evaluate
    base_key: str  # the base expression's syntax tree as JSON: equal for equal expressions
    key: str
    literal: str
    right: Evaluate | None  # None: the elements themselves

    def project(self, document: JsonDocument) -> list[Any] | None:
        """What jmespath's filter projection gives: each match's ``right``, nulls dropped; None if no list."""
        index = document.tags(self)
        if index is None:
            return None
        matches = index.get(self.literal, ())
        right = self.right
        selected = matches if right is None else [right(element) for element in matches]
        return [item for item in selected if item is not None]


def _tag_lookup(node: dict[str, Any]) -> _TagLookup | None:
    """The lookup a filter projection on ``field == 'string'`` is, else None (jmespath's syntax tree)."""
    if node["type"] != "filter_projection":
        return None
    base, right, comparator = node["children"]
    if comparator["type"] != "comparator" or comparator["value"] != "eq":
        return None
    key, literal = sorted(comparator["children"], key=lambda operand: operand["type"] != "field")
    if key["type"] != "field" or literal["type"] != "literal" or not isinstance(literal["value"], str):
        return None
    return _TagLookup(evaluator(base), json.dumps(base, sort_keys=True), key["value"], literal["value"],
                      None if right["type"] == "identity" else evaluator(right))


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A compiled field path, equal to another of the same expression. ``tags[?id=='x']...`` (a filter
    on a tag id, then pipes) is evaluated through its document's tag index, with the result jmespath gives."""

    expression: str
    compiled: ParsedResult = field(compare=False)
    lookup: _TagLookup | None = field(default=None, compare=False)
    # applied in order to the lookup's result (the pipes after it), or without one to the document
    after: tuple[Evaluate, ...] = field(default=(), compare=False)

    def search(self, document: JsonDocument) -> Any:
        """What the path selects in ``document`` (None: nothing)."""
        result: Any = document.value if self.lookup is None else self.lookup.project(document)
        for step in self.after:
            result = step(result)
        return result


def compile_path(expression: str) -> FieldPath:
    """``expression`` compiled; ValueError with jmespath's reason, on one line, if it is not JMESPath."""
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as error:
        reason = str(error).split("\n", 1)[0].removesuffix(", for expression:").rstrip(":")
        if isinstance(error, LexerError):
            reason += f" at column {error.lexer_position}"
        raise ValueError(f"not a JMESPath expression: {reason}") from None
    problem = _functions_problem(compiled.parsed)
    if problem is not None:
        raise ValueError(f"not a usable JMESPath expression: {problem}")
    node, after = compiled.parsed, []
    while node["type"] == "pipe":  # a | b | c is ((a | b) | c)
        node, right = node["children"]
        after.insert(0, evaluator(right))
    lookup = _tag_lookup(node)
    if lookup is None:
        return FieldPath(expression, compiled, None, (evaluator(compiled.parsed),))
    return FieldPath(expression, compiled, lookup, tuple(after))


@dataclass(frozen=True, slots=True)
class FieldPaths:
    """Where one characteristic's reading is in a JSON document, and how to read it."""

    value: FieldPath
    timestamp: FieldPath | None = None
    unit: TimestampUnit = "iso"
    quality: FieldPath | None = None
    good_quality: tuple[Quality, ...] = (True,)
    n: FieldPath | None = None
    seq: FieldPath | None = None
    attribute: bool = False  # value_path selects a count (p, np, c, u charts)
    subgroups: bool = False  # value_path may select a list: a whole subgroup (subgroup_size above 1)


def _shown(value: Any) -> str:
    """``value`` as JSON (non-ASCII escaped: a reason is stored and logged), cut short for a reason."""
    text = json.dumps(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _select(path: FieldPath, document: JsonDocument, key: str) -> Any:
    """What ``path`` selects in ``document``; IngestError if it selects nothing or cannot be evaluated."""
    try:
        selected = path.search(document)
    except (ValueError, ArithmeticError, TypeError) as error:
        # A function given a value of the wrong type: jmespath's JMESPathTypeError (a ValueError), or a
        # TypeError where it checks only the first element (max_by over mixed numbers and strings); float
        # arithmetic beyond floats (avg, ceil of to_number): OverflowError, ValueError.
        # (its text may quote the document: escaped, for a reason is stored and logged)
        detail = str(error).partition("\n")[0][:200].encode("unicode_escape").decode("ascii")
        raise IngestError(f"{key} {path.expression} cannot be evaluated on this message: {detail}") from None
    if selected is None:
        raise IngestError(f"{key} {path.expression} selects nothing in this message")
    return selected


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(value: Any, good: Quality) -> bool:
    """JSON equality of scalars: true is not 1, 1 is 1.0."""
    if isinstance(good, bool) or isinstance(value, bool):
        return value is good
    if _is_number(good):
        return _is_number(value) and value == good
    return isinstance(value, str) and value == good


def _number(selected: Any, what: str) -> Any:
    if not _is_number(selected):
        raise IngestError(f"{what} selects {_shown(selected)}, not a number")
    return selected


def _value(selected: Any, paths: FieldPaths) -> tuple[float, ...]:
    """The measurements value_path selected: one number, or a whole subgroup where the chart has them."""
    what = f"value_path {paths.value.expression}"
    if not isinstance(selected, list):
        return (measurement(_number(selected, what), what),)
    if not paths.subgroups:
        raise IngestError(f"{what} selects {_shown(selected)}, not a number (a list is a whole subgroup, "
                          "for charts with subgroup_size above 1; add | [0] to take its first element)")
    return subgroup(selected, what)


def _time(document: JsonDocument, paths: FieldPaths, now: datetime) -> tuple[str, datetime]:
    """The reading's timestamp as kept and its instant: timestamp_path's, else the receipt time."""
    if paths.timestamp is None:
        return iso_utc(now), now
    sent = _select(paths.timestamp, document, "timestamp_path")
    what = f"timestamp_path {paths.timestamp.expression}"
    if paths.unit == "iso":
        return timestamp(sent, now, what)
    return epoch_timestamp(sent, paths.unit, now, what)


def read_reading(document: Any, paths: FieldPaths, now: datetime) -> Reading:
    """The reading ``paths`` select in ``document`` (decoded JSON, or a JsonDocument to share its tag
    index with the other characteristics reading it) received at ``now`` (UTC), or IngestError with the reason."""
    if not isinstance(document, JsonDocument):
        document = JsonDocument(document)
    if paths.quality is not None:
        quality = _select(paths.quality, document, "quality_path")
        if not any(_equal(quality, good) for good in paths.good_quality):
            raise IngestError(f"bad quality: quality_path {paths.quality.expression} is {_shown(quality)}")
    selected = _select(paths.value, document, "value_path")
    values: tuple[float, ...] | None = None
    count = n = None
    if paths.attribute:
        what = f"value_path {paths.value.expression}"
        count = whole_number(_number(selected, what), what, 0)
        if paths.n is not None:
            n = whole_number(_select(paths.n, document, "n_path"), f"n_path {paths.n.expression}", 1)
    else:
        values = _value(selected, paths)
    ts, time = _time(document, paths, now)
    sent_seq = seq = None
    if paths.seq is not None:
        sent_seq = _select(paths.seq, document, "seq_path")
        seq = seq_text(sent_seq, f"seq_path {paths.seq.expression}")
    single = values is not None and not isinstance(selected, list)
    return Reading(values, single, count, n, ts, time, seq, paths.timestamp is not None, isinstance(sent_seq, int))
