"""Settings of ``spc-bridge run`` (options and environment) and the characteristics file (TOML)."""

import argparse
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, fields
from json import dumps
from math import isfinite
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo
from pydantic import SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.contract import REASON_CODE
from bridge.fieldpaths import FieldPath, FieldPaths, Quality, TimestampUnit, compile_path
from bridge.service.subscriptions import roots_problems
from bridge.sparkplug.topics import device_topic, id_problem, node_topic
from bridge.spc.charts import CHART_TYPES
from bridge.spc.rules import resolve_rules
from bridge.spc.spec import DEFAULT_BASELINE, ChartSpec


class ConfigError(Exception):
    """A setting or the characteristics file is wrong; the message says where and why."""


# --- the characteristics file ---------------------------------------------------------------

OUR_TOPIC_ROOT = "spc"                  # spc/<id>/... and spc/bridge/state are the bridge's own
MAX_TOPIC_BYTES = 65535                 # an MQTT UTF-8 string is at most 65535 bytes
MAX_ID = 2**31 - 1                      # ids are stored in a 32-bit integer column
MAX_PARTITIONS = 1000                   # of one logical bridge (--partitions)
MAX_INTERVAL_S = 366 * 86400.0          # the longest expected_interval: a year
UNGROUPED_CHARTS = ("imr", "c", "cusum", "ewma")  # charts whose subgroup_size defaults to 1
SIZED_CHARTS = ("p", "np", "u")         # attribute charts whose samples may each give their size n
# Keys that read a reading out of vendor JSON (bridge.fieldpaths); all but value_path need value_path.
PATH_KEYS = ("value_path", "timestamp_path", "timestamp_unit", "quality_path", "good_quality", "n_path", "seq_path")

RuleSelection = str | list[int | dict[str, int | str]]

# ChartSpec's arguments in the order CharacteristicConfig declares them (rules are checked alone).
_SPEC_FIELDS = (
    "chart", "subgroup_size", "baseline", "center", "ucl", "lcl", "sigma", "sigma_method",
    "usl", "lsl", "k", "h", "reset_after_signal", "fir", "lambda_", "L",
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_rule_item(item: object) -> bool:
    if _is_int(item):
        return True
    return isinstance(item, dict) and all(
        isinstance(value, str) if key == "severity" else _is_int(value)
        for key, value in item.items()
    )


def _compiled(expression: str | None) -> FieldPath | None:
    return None if expression is None else compile_path(expression)


def _build_spec(values: dict[str, Any]) -> ChartSpec:
    """The engine's spec from validated config values (rule selections resolved)."""
    spec_args = dict(values)
    for key in ("rules", "dispersion_rules"):
        if key in spec_args:
            spec_args[key] = resolve_rules(spec_args[key])
    return ChartSpec(**spec_args)


class SparkplugSource(BaseModel):
    """``sparkplug = { group_id, edge_node_id, device_id, metric }``: a characteristic's readings are
    a Sparkplug B metric of an edge node (no device_id) or of one of its devices."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    group_id: str
    edge_node_id: str
    device_id: str | None = Field(default=None, description="left out for a metric of the edge node itself")
    metric: str = Field(description="the metric's name as its birth certificate gives it, e.g. Bore/Diameter")
    n_metric: str | None = Field(default=None, description="p, np, u charts: the metric of the sample size")

    @field_validator("group_id", "edge_node_id", "device_id")
    @classmethod
    def _sparkplug_id(cls, value: str | None) -> str | None:
        problem = None if value is None else id_problem(value)
        if problem is not None:
            raise ValueError(f"{value!r} {problem}: a Sparkplug id is one level of its topics")
        return value

    @field_validator("metric", "n_metric")
    @classmethod
    def _metric_name(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        if value is not None and "\0" in value:
            raise ValueError("must not contain the character U+0000")
        return value

    @model_validator(mode="after")
    def _topic_fits(self) -> "SparkplugSource":
        longest = (node_topic(self.group_id, "NBIRTH", self.edge_node_id) if self.device_id is None
                   else device_topic(self.group_id, "DBIRTH", self.edge_node_id, self.device_id))
        if len(longest.encode("utf-8")) > MAX_TOPIC_BYTES:
            raise ValueError(f"its Sparkplug topics would be longer than {MAX_TOPIC_BYTES} bytes in UTF-8")
        return self

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        """(group_id, edge_node_id, device_id, metric): what identifies the metric."""
        return self.group_id, self.edge_node_id, self.device_id, self.metric


class CharacteristicConfig(BaseModel):
    """One ``[[characteristic]]`` table: where its gauge publishes and how it is charted."""

    # serialised with the file's keys (``lambda``, not the attribute ``lambda_``)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, serialize_by_alias=True)

    id: int = Field(gt=0, le=MAX_ID, description="names the topics spc/<id>/...")
    name: str
    topic: str | None = Field(default=None, description="the MQTT topic its gauge publishes on (no wildcards)")
    sparkplug: SparkplugSource | None = Field(default=None, description="instead of topic: a Sparkplug B metric")
    # vendor JSON on the topic (bridge.fieldpaths): JMESPath expressions selecting the reading's parts
    value_path: str | None = Field(default=None, description="the measurement, a subgroup (list) or a count")
    timestamp_path: str | None = None
    timestamp_unit: TimestampUnit | None = Field(default=None, description="iso (the default), s or ms")
    quality_path: str | None = None
    good_quality: list[Quality] | None = Field(default=None, description="what a good quality equals; [true]")
    n_path: str | None = None
    seq_path: str | None = None
    chart: str = Field(description="imr | xbar_r | xbar_s | p | np | c | u | cusum | ewma")
    subgroup_size: int = Field(default=None, validate_default=True)
    baseline: int = DEFAULT_BASELINE
    center: float | None = None
    ucl: float | None = None
    lcl: float | None = None
    sigma: float | None = None
    sigma_method: str | None = None
    usl: float | None = None
    lsl: float | None = None
    # options of the charts with memory (bridge/spc/memory.py); left out, the chart's defaults
    k: float | None = None
    h: float | None = None
    reset_after_signal: bool | None = None
    fir: bool | None = None
    lambda_: float | None = Field(default=None, alias="lambda")
    L: float | None = None
    rules: RuleSelection = "nelson"
    dispersion_rules: RuleSelection = "rule1"
    # a reading is expected every expected_interval seconds: none for that long plus the tolerance is a
    # missed sample (a violation, and a stale status)
    expected_interval: float | None = Field(default=None, gt=0, le=MAX_INTERVAL_S, allow_inf_nan=False)
    interval_tolerance: float | None = Field(default=None, ge=0, le=MAX_INTERVAL_S, allow_inf_nan=False)
    # the partition that serves it when the bridge runs --partitions N (bridge.service.partitions)
    partition: int | None = Field(default=None, ge=0, le=MAX_PARTITIONS - 1)

    _spec: ChartSpec = PrivateAttr()
    _paths: FieldPaths | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("must not be empty")
        return name

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, topic: str | None) -> str | None:
        if topic is None:  # a Sparkplug characteristic's, serialised
            return None
        if "+" in topic or "#" in topic:
            raise ValueError(f"{topic!r} has a wildcard (+ or #): give the exact topic the gauge uses")
        if topic.startswith("$"):
            raise ValueError(f"{topic!r} starts with '$', which brokers reserve for themselves")
        if "" in topic.split("/"):
            raise ValueError(f"{topic!r} has an empty level (a leading, trailing or double '/')")
        if topic.split("/")[0] == OUR_TOPIC_ROOT:
            raise ValueError(f"{topic!r} is in {OUR_TOPIC_ROOT}/#, where the bridge publishes its events")
        if "\0" in topic:
            raise ValueError("must not contain the character U+0000")
        if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
            raise ValueError(f"is longer than {MAX_TOPIC_BYTES} bytes in UTF-8")
        return topic

    @field_validator("value_path", "timestamp_path", "quality_path", "n_path", "seq_path")
    @classmethod
    def _jmespath(cls, expression: str | None) -> str | None:
        if expression is not None and "\0" in expression:  # it is quoted in reject reasons, stored as text
            raise ValueError("must not contain the character U+0000")
        if expression is not None:
            compile_path(expression)  # its ValueError gives jmespath's reason
        return expression

    @field_validator("good_quality", mode="before")
    @classmethod
    def _quality_values(cls, value: object) -> object:
        if value is not None and (not isinstance(value, list) or not value or not all(
                isinstance(item, (bool, int, float, str)) for item in value)):
            raise ValueError("expected a non-empty list of the values a good quality equals: true/false, "
                             'numbers or strings, e.g. [true], [192] or ["Good"]')
        return value

    @field_validator("subgroup_size", mode="before")
    @classmethod
    def _default_subgroup_size(cls, value: object, info: ValidationInfo) -> object:
        if value is not None:
            return value
        chart = info.data.get("chart")
        if chart is None or chart in UNGROUPED_CHARTS:
            return 1
        raise ValueError(
            f"required for a {chart} chart: the number of measurements in a subgroup "
            "(xbar_r, xbar_s) or the nominal sample size (p, np, u)"
        )

    @field_validator("chart")
    @classmethod
    def _known_chart(cls, chart: str) -> str:
        if chart not in CHART_TYPES:
            raise ValueError(f"unknown chart {chart!r}: choose one of {', '.join(CHART_TYPES)}")
        return chart

    @field_validator(*_SPEC_FIELDS[1:])
    @classmethod
    def _engine_accepts(cls, value: object, info: ValidationInfo) -> object:
        """Let ChartSpec judge this field together with the fields declared before it."""
        field_name = str(info.field_name)
        earlier = _SPEC_FIELDS[: _SPEC_FIELDS.index(field_name)]
        if all(name in info.data for name in earlier):  # else an earlier field is already wrong
            _build_spec({**{name: info.data[name] for name in earlier}, field_name: value})
        return value

    @field_validator("rules", "dispersion_rules", mode="before")
    @classmethod
    def _rule_selection(cls, value: object) -> object:
        if not isinstance(value, str) and not (
            isinstance(value, list) and all(_is_rule_item(item) for item in value)
        ):
            raise ValueError(
                'expected a preset name ("nelson", "western_electric", "rule1") or a list of rule '
                "ids 1..8 and tables {id, count, window, severity} (integers, severity a string)"
            )
        resolve_rules(value)  # its ValueError names the bad rule
        return value

    @field_validator("rules", "dispersion_rules")
    @classmethod
    def _rules_apply(cls, value: object, info: ValidationInfo) -> object:
        """Refuse rules, given explicitly, on a chart with memory (CUSUM, EWMA)."""
        chart = info.data.get("chart")
        if chart in CHART_TYPES and CHART_TYPES[chart].memory is not None:
            raise ValueError(
                f"the Nelson rules do not apply to a {chart} chart (its points are autocorrelated; "
                f"it signals when its statistic crosses its limits): remove {info.field_name}")
        return value

    @model_validator(mode="after")
    def _make_spec(self) -> "CharacteristicConfig":
        names = (*_SPEC_FIELDS, "rules", "dispersion_rules")
        self._spec = _build_spec({name: getattr(self, name) for name in names})
        return self

    @model_validator(mode="after")
    def _make_paths(self) -> "CharacteristicConfig":
        """One source (a topic or a Sparkplug metric), and the field paths only where they apply."""
        # Raised here a problem has no field of its own in pydantic's error: the message names its key.
        if (self.topic is None) == (self.sparkplug is None):
            raise ValueError(
                "topic: give either topic (the MQTT topic the gauge publishes on) or sparkplug = "
                "{ group_id, edge_node_id, device_id, metric } (a Sparkplug B metric), not both"
                if self.topic is not None else
                "topic: required: the MQTT topic the gauge publishes on, or instead sparkplug = "
                "{ group_id, edge_node_id, device_id, metric } for a Sparkplug B metric")
        given = [key for key in PATH_KEYS if getattr(self, key) is not None]
        if self.sparkplug is not None and given:
            raise ValueError(f"{given[0]}: only with topic: a Sparkplug metric carries its own value, "
                             "timestamp and quality")
        if self.value_path is None and given:
            raise ValueError(f"{given[0]}: needs value_path (without it the topic's payloads are the bridge's "
                             'JSON readings: a number, "value", "values" or "count")')
        for key, needed in (("timestamp_unit", "timestamp_path"), ("good_quality", "quality_path"),
                            ("interval_tolerance", "expected_interval")):
            if getattr(self, key) is not None and getattr(self, needed) is None:
                raise ValueError(f"{key}: needs {needed}")
        sized = [key for key, value in (("n_path", self.n_path),
                                        ("sparkplug.n_metric", self.sparkplug and self.sparkplug.n_metric))
                 if value is not None]
        if sized and self.chart not in SIZED_CHARTS:
            raise ValueError(f"{sized[0]}: only p, np and u charts take a sample size per sample "
                             f"(not a {self.chart} chart)")
        if self.value_path is not None:
            attribute = CHART_TYPES[self.chart].attribute
            self._paths = FieldPaths(
                compile_path(self.value_path), _compiled(self.timestamp_path), self.timestamp_unit or "iso",
                _compiled(self.quality_path), tuple(self.good_quality or (True,)), _compiled(self.n_path),
                _compiled(self.seq_path), attribute, not attribute and self.subgroup_size > 1)
        return self

    @model_serializer(mode="wrap")
    def _applicable_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The file's keys, without rules and dispersion_rules where they do not apply (CUSUM, EWMA):
        their defaults, written out, would be refused as given, and the serialised form must load again."""
        data: dict[str, Any] = handler(self)
        if self.partition is None:  # a key added in 0.17: earlier files' texts stay the same
            data.pop("partition", None)
        if CHART_TYPES[self.chart].memory is not None:
            data.pop("rules", None)
            data.pop("dispersion_rules", None)
        return data

    def chart_spec(self) -> ChartSpec:
        """The engine's ChartSpec for this characteristic."""
        return self._spec

    def field_paths(self) -> FieldPaths | None:
        """Where value_path and the other path keys find its readings in vendor JSON (compiled), or None
        when it has no value_path (its payloads are bridge.ingest's JSON, or it is a Sparkplug metric)."""
        return self._paths


def _describe(index: int, table: object) -> str:
    """'characteristic #2 (id 7, "Bore")' with whatever of id and name the table has."""
    known: list[str] = []
    if isinstance(table, dict):
        if _is_int(table.get("id")):
            known.append(f"id {table['id']}")
        if isinstance(table.get("name"), str):
            known.append(dumps(table["name"], ensure_ascii=False))
    return f"characteristic #{index}" + (f" ({', '.join(known)})" if known else "")


def _problem(error: Any) -> str:
    """One pydantic error as 'field: message'."""
    where = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind == "extra_forbidden" and where == "ingest_roots":
        message = ("put it at the top of the file, above the first [[characteristic]] "
                   "(a key below a table belongs to it)")
    elif kind == "extra_forbidden":
        model = SparkplugSource if where.startswith("sparkplug.") else CharacteristicConfig
        keys = (info.alias or name for name, info in model.model_fields.items())
        message = f"unknown key; the keys are {', '.join(keys)}"
    elif kind == "model_type" and where == "sparkplug":
        message = ('write it as a table: sparkplug = { group_id = "...", edge_node_id = "...", '
                   'device_id = "...", metric = "..." }')
    elif kind == "missing":
        message = "required"
    else:
        message = f"{error['msg']} (got {error['input']!r})"
    return f"{where}: {message}" if where else message


class Characteristics(list[CharacteristicConfig]):
    """The characteristics of a file, the ``ingest_roots`` it names (empty: derived from the topics) and its
    ``reason_codes`` (None: the file names none, bridge.contract.DEFAULT_REASON_CODES apply)."""

    def __init__(self, configs: Iterable[CharacteristicConfig] = (), ingest_roots: Iterable[str] = (),
                 reason_codes: Iterable[str] | None = None) -> None:
        super().__init__(configs)
        self.ingest_roots = tuple(ingest_roots)
        self.reason_codes = tuple(reason_codes) if reason_codes is not None else None


def _reason_codes(document: dict[str, Any]) -> list[str] | None:
    """The file's ``reason_codes``, None when it has none."""
    codes = document.get("reason_codes")
    if codes is None:
        return None
    if (not isinstance(codes, list) or not codes
            or not all(isinstance(c, str) and REASON_CODE.fullmatch(c) for c in codes)):
        raise ValueError('write it as a non-empty list of codes of 1 to 64 lower-case letters, digits and "_", '
                         'e.g. reason_codes = ["tool_wear", "material", "unknown"]')
    if len(set(codes)) != len(codes):
        raise ValueError("a code is listed twice")
    return codes


def _ingest_roots(document: dict[str, Any]) -> list[str]:
    """The file's ``ingest_roots`` (a list of topic filters), empty when it has none."""
    roots = document.get("ingest_roots", [])
    if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
        raise ValueError('write it as a list of topic filters, e.g. ingest_roots = ["plant1/#", "plant2/#"], '
                         "above the first [[characteristic]]")
    return roots


def _named(index: int, config: CharacteristicConfig) -> str:
    return _describe(index, {"id": config.id, "name": config.name})


def _clashes(index: int, config: CharacteristicConfig, by_id: dict[int, tuple[int, CharacteristicConfig]],
             by_topic: dict[str, list[tuple[int, CharacteristicConfig]]],
             by_metric: dict[tuple[str, str, str | None, str], tuple[int, CharacteristicConfig]]) -> list[str]:
    """What ``config`` repeats of the characteristics before it (recorded in the three maps): its id, a
    topic it cannot share, its Sparkplug metric."""
    problems = []
    first = by_id.setdefault(config.id, (index, config))
    if first[0] != index:
        problems.append(f"id: {config.id!r} is already the id of {_named(*first)}")
    if config.topic is not None:
        sharing = by_topic.setdefault(config.topic, [])
        alone = next((pair for pair in ((index, config), *sharing) if pair[1].value_path is None), None)
        if sharing and alone is not None:
            who = "this one" if alone[0] == index else _named(*alone)
            problems.append(f"topic: {config.topic!r} is already the topic of {_named(*sharing[0])}; "
                            "characteristics share a topic only when each selects its reading with value_path, "
                            f"and {who} has none")
        else:
            sharing.append((index, config))
    if config.sparkplug is not None:
        first = by_metric.setdefault(config.sparkplug.key, (index, config))
        if first[0] != index:
            group, node, device, metric = config.sparkplug.key
            problems.append(f"sparkplug: metric {metric!r} of {group}/{node}" + (f"/{device}" if device else "")
                            + f" is already the source of {_named(*first)}")
    return problems


def load_characteristics(path: str | Path) -> Characteristics:
    """Read and validate a characteristics TOML file: ``[[characteristic]]`` tables and optional
    ``ingest_roots``, the topic filters the bridge subscribes to (each topic under exactly one)."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    unknown = sorted(set(document) - {"characteristic", "ingest_roots", "reason_codes"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}: "
            "the file holds ingest_roots, reason_codes and [[characteristic]] tables"
        )
    try:
        roots = _ingest_roots(document)
    except ValueError as error:
        raise ConfigError(f"{path}: ingest_roots: {error}") from None
    try:
        reason_codes = _reason_codes(document)
    except ValueError as error:
        raise ConfigError(f"{path}: reason_codes: {error}") from None
    tables = document.get("characteristic", [])
    if not isinstance(tables, list):
        raise ConfigError(
            f"{path}: write each characteristic as a [[characteristic]] table (double brackets)"
        )
    if not tables:
        raise ConfigError(f"{path}: no characteristics: add at least one [[characteristic]] table")

    problems: list[str] = []
    configs: list[CharacteristicConfig] = []
    by_id: dict[int, tuple[int, CharacteristicConfig]] = {}
    by_topic: dict[str, list[tuple[int, CharacteristicConfig]]] = {}
    by_metric: dict[tuple[str, str, str | None, str], tuple[int, CharacteristicConfig]] = {}
    # Each table is dropped once validated, so that the models reuse the parsed document's memory
    # (ten thousand characteristics would otherwise leave both in the process's resident set).
    tables.reverse()
    for index in range(1, len(tables) + 1):
        table = tables.pop()
        where = _describe(index, table)
        try:
            config = CharacteristicConfig.model_validate(table)
        except ValidationError as error:
            problems.extend(f"{where}: {_problem(e)}" for e in error.errors())
            continue
        problems.extend(f"{where}: {problem}" for problem in _clashes(index, config, by_id, by_topic, by_metric))
        configs.append(config)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    if roots:
        problems = roots_problems(roots, by_topic)
        if problems:
            raise ConfigError(f"{path}: ingest_roots: " + "; ".join(problems))
    return Characteristics(configs, roots, reason_codes)


# --- the broker URL --------------------------------------------------------------------------

Scheme = Literal["mqtt", "mqtts", "ws", "wss"]
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 9001, "wss": 9443}
DEFAULT_WS_PATH = "/mqtt"               # paho's ws_set_options default


def _masked(parts: SplitResult) -> str:
    """The URL with its password, if any, replaced by ***."""
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{hostport}"))


@dataclass(frozen=True)
class BrokerUrl:
    """Where the broker is: mqtt://, mqtts:// (TLS), ws:// or wss:// (MQTT over WebSockets)."""

    scheme: Scheme
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    path: str | None = None             # the WebSocket path; None for mqtt:// and mqtts://

    @property
    def transport(self) -> Literal["tcp", "websockets"]:
        """paho's transport: 'tcp' or 'websockets'."""
        return "websockets" if self.scheme in ("ws", "wss") else "tcp"

    @property
    def tls(self) -> bool:
        """True for mqtts:// and wss://."""
        return self.scheme in ("mqtts", "wss")

    def __str__(self) -> str:
        userinfo = ""
        if self.username is not None:
            userinfo = quote(self.username, safe="") + (":***" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{userinfo}{host}:{self.port}{self.path or ''}"

    def __repr__(self) -> str:
        return f"BrokerUrl({str(self)!r})"


def parse_broker_url(text: str) -> BrokerUrl:
    """Parse mqtt://user:pass@host:1883, mqtts://host, ws://host:9001/mqtt or wss://host."""
    try:
        parts = urlsplit(text.strip())
    except ValueError as error:
        raise ConfigError(f"broker URL is malformed: {error}") from None
    shown = _masked(parts)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ConfigError(
            f"broker URL {shown!r}: unknown scheme {parts.scheme!r}: use mqtt://, mqtts:// (TLS), "
            "ws:// or wss:// (MQTT over WebSockets), e.g. mqtt://127.0.0.1:1883"
        )
    if not parts.hostname:
        raise ConfigError(f"broker URL {shown!r} has no host, e.g. {scheme}://127.0.0.1")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(f"broker URL {shown!r}: the port must be a number 1..65535")
    if parts.query or parts.fragment:
        raise ConfigError(f"broker URL {shown!r}: a query or fragment (? or #) has no meaning here")
    path: str | None = None
    if scheme in ("ws", "wss"):
        path = parts.path or DEFAULT_WS_PATH
    elif parts.path not in ("", "/"):
        raise ConfigError(f"broker URL {shown!r}: only ws:// and wss:// URLs have a path")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and username is None:
        raise ConfigError(f"broker URL {shown!r}: a password needs a user name (user:password@host)")
    port = port or _DEFAULT_PORTS[scheme]
    return BrokerUrl(cast(Scheme, scheme), parts.hostname, port, username, password, path)


# --- settings of `spc-bridge run` ------------------------------------------------------------

ENV_PREFIX = "SPC_BRIDGE_"
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_DB = "sqlite:///spc.db"
MQTT_VERSIONS = ("3.1.1", "5")
KEPT, RENUMBERED = "kept", "renumbered"  # --redelivered-ids: what a broker's redeliveries carry
REDELIVERED_IDS = (KEPT, RENUMBERED)
MAX_PACKET = 268_435_455                # the largest MQTT packet (remaining length)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything ``spc-bridge run`` needs besides the characteristics themselves."""

    broker: BrokerUrl
    db_url: str = DEFAULT_DB
    config_path: Path
    client_id: str = "spc-bridge"
    batch_size: int = 500
    batch_ms: float = 0.0
    max_payload: int = 65536
    capability_interval: float = 10.0
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    mqtt_version: Literal["3.1.1", "5"] = "3.1.1"
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: no metrics and health endpoint
    sparkplug_host_id: str = "spc-bridge"
    sparkplug_reorder_timeout: float = 2.0
    users: Path | None = None  # the users directory, to check roles in the bridge too (bridge.service.roles)
    instance: str | None = None  # this process's name among those serving the bridge; None: host:pid
    partitions: int = 1  # of the characteristics (bridge.service.partitions)
    take: int | None = None  # the most partitions this process serves while others wait; None: all
    lease_ttl: float = 5.0  # seconds a lease lasts unrenewed (bridge.store.lease)
    redelivered_ids: str = KEPT  # what the broker's redeliveries carry (bridge.service.resends)

    def __post_init__(self) -> None:
        try:
            make_url(self.db_url)
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            raise ConfigError(
                "db: not a database URL: give e.g. sqlite:///spc.db or "
                "postgresql+psycopg://user:password@127.0.0.1:5432/spc"
            ) from None
        if not self.client_id or len(self.client_id.encode("utf-8")) > MAX_TOPIC_BYTES:
            raise ConfigError(
                "client-id: must be 1 to 65535 bytes (the persistent session is kept under it)"
            )
        if any(char in self.client_id for char in "+#\0"):
            raise ConfigError("client-id: must not contain +, # or U+0000 (it names the topic "
                              "spc/bridge/state/<client-id>)")
        if self.batch_size < 1:
            raise ConfigError(f"batch-size: must be at least 1, got {self.batch_size}")
        if not (isfinite(self.batch_ms) and self.batch_ms >= 0):
            raise ConfigError(f"batch-ms: must be a finite number of ms >= 0, got {self.batch_ms}")
        if not 1 <= self.max_payload <= MAX_PACKET:
            raise ConfigError(f"max-payload: must be 1..{MAX_PACKET} bytes, got {self.max_payload}")
        if not (isfinite(self.capability_interval) and self.capability_interval >= 0):
            raise ConfigError("capability-interval: must be a finite number of seconds >= 0, "
                              f"got {self.capability_interval}")
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics-port: must be 1..65535, got {self.metrics_port}")
        if (problem := id_problem(self.sparkplug_host_id)) is not None:
            raise ConfigError(f"sparkplug-host-id: {problem}")
        if not (isfinite(self.sparkplug_reorder_timeout) and self.sparkplug_reorder_timeout > 0):
            raise ConfigError("sparkplug-reorder-timeout: must be a finite number of seconds > 0, "
                              f"got {self.sparkplug_reorder_timeout}")
        if self.mqtt_version not in MQTT_VERSIONS:
            raise ConfigError(
                f"mqtt-version: must be one of {', '.join(MQTT_VERSIONS)}, got {self.mqtt_version!r}"
            )
        tls_files = {"ca-file": self.ca_file, "cert-file": self.cert_file, "key-file": self.key_file}
        for option, file in tls_files.items():
            if file is None:
                continue
            if not self.broker.tls:
                raise ConfigError(
                    f"{option}: given, but the broker URL {self.broker} is not mqtts:// or wss://"
                )
            if not file.is_file():
                raise ConfigError(f"{option}: {file}: no such file")
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError("key-file: given without cert-file (the client certificate it belongs to)")
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ConfigError(f"partitions: must be 1..{MAX_PARTITIONS}, got {self.partitions}")
        if self.take is not None and not 1 <= self.take <= self.partitions:
            raise ConfigError(f"take: must be 1..{self.partitions} (the partitions), got {self.take}")
        if not (isfinite(self.lease_ttl) and 1 <= self.lease_ttl <= 3600):
            raise ConfigError(f"lease-ttl: must be 1..3600 seconds, got {self.lease_ttl}")
        if self.redelivered_ids not in REDELIVERED_IDS:
            raise ConfigError(f"redelivered-ids: must be one of {', '.join(REDELIVERED_IDS)}, "
                              f"got {self.redelivered_ids!r}")
        if self.instance is not None and not 1 <= len(self.instance) <= 200:
            raise ConfigError("instance: must be 1 to 200 characters")
        if self.partitions > 1 and make_url(self.db_url).get_backend_name() == "sqlite":
            raise ConfigError("partitions: need PostgreSQL (postgresql://...): SQLite is one file on one machine, "
                              "written by one bridge process at a time")
        if self.partitions > 1 and self.metrics_port is not None:
            raise ConfigError("metrics-port: not with partitions yet; run one partition per process for metrics")
        if self.users is not None and not (self.users / "users.toml").is_file():
            raise ConfigError(f"users: {self.users}: no users.toml there (create users with `spc-bridge user add`)")

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["db_url"] = make_url(self.db_url).render_as_string(hide_password=True)
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in shown.items())})"


def _env_name(option: str) -> str:
    """SPC_BRIDGE_CLIENT_ID for --client-id."""
    return ENV_PREFIX + option.lstrip("-").upper().replace("-", "_")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``run``; each defaults from SPC_BRIDGE_<OPTION> in the environment."""

    def add(option: str, default: str | None, text: str, **kwargs: Any) -> None:
        env = _env_name(option)
        value = os.environ.get(env) or default
        shown = f"default {default}; environment {env}" if default else f"environment {env}"
        parser.add_argument(
            option, default=value, required=value is None and option == "--config",
            help=f"{text} ({shown})", **kwargs,
        )

    add("--broker", DEFAULT_BROKER,
        "broker URL: mqtt://[user:password@]host[:1883], mqtts://host[:8883], ws://host[:9001][/path] "
        f"or wss://host[:9443][/path], WebSocket path {DEFAULT_WS_PATH} unless given; a password is "
        "better kept in the environment than on the command line", metavar="URL")
    add("--db", DEFAULT_DB, "SQLAlchemy database URL", metavar="URL")
    add("--config", None, "characteristics TOML file (see characteristics.example.toml)",
        type=Path, metavar="FILE")
    add("--client-id", None, "MQTT client id; the broker keeps the persistent session under it. Both brokers "
        "admit a user's own ids only: its name or <name>:<anything> (default: the broker URL's user name, "
        "else spc-bridge)")
    add("--batch-size", "500", "most readings committed in one transaction (a vendor JSON or Sparkplug message "
        "counts as the characteristics it may feed)", type=int)
    add("--batch-ms", "0", "longest wait in milliseconds to fill a batch (0: a batch is what "
        "has arrived, and grows by itself while the one before it commits)", type=float)
    add("--max-payload", "65536", "largest accepted JSON payload in bytes (a Sparkplug B payload may have 1 MiB "
        "and 10,000 metrics)", type=int)
    add("--capability-interval", "10", "shortest time in seconds between two republications of a "
        "characteristic's retained limits for its changing capability (Cp, Cpk, Pp, Ppk)", type=float)
    add("--ca-file", None, "CA certificates (PEM) to verify an mqtts:// or wss:// broker",
        type=Path, metavar="FILE")
    add("--cert-file", None, "client certificate (PEM) for mqtts:// or wss://", type=Path, metavar="FILE")
    add("--key-file", None, "private key (PEM) of the client certificate", type=Path, metavar="FILE")
    add("--mqtt-version", "3.1.1", "MQTT protocol version", choices=MQTT_VERSIONS)
    add("--metrics-port", None, "serve Prometheus metrics at http://HOST:PORT/metrics and a health "
        "check at /healthz (200 or 503) for systemd and Kubernetes probes; off unless given",
        type=int, metavar="PORT")
    add("--sparkplug-host-id", None, "the Sparkplug B host application id: the bridge publishes its STATE on "
        "spBv1.0/STATE/<id>; on the project's brokers it must be the bridge's user name (default: the broker "
        "URL's user name, else spc-bridge)")
    add("--sparkplug-reorder-timeout", "2", "seconds a gap in an edge node's Sparkplug seq may last before the "
        "bridge asks the node for a rebirth", type=float)
    add("--metrics-host", "127.0.0.1", "address the metrics port listens on; 0.0.0.0 for every "
        "interface, where a Prometheus server on another machine scrapes it", metavar="HOST")
    add("--users", None, "users directory of `spc-bridge user` (only users.toml is read): the bridge then "
        "checks each command against the sender's role too, besides the broker's ACL", type=Path, metavar="DIR")
    add("--instance", None, "this process's name among the instances serving the same client id and database; "
        "spc/bridge/state/<client-id> and the logs name the active one (default: host:pid)")
    add("--partitions", "1", "split the characteristics into N partitions, each with its own client id "
        "<client-id>:p<k>, session and lease (a characteristic's partition key, else its id mod N; "
        "PostgreSQL only)", type=int, metavar="N")
    add("--take", None, "the most partitions this process serves while other processes wait for some; it "
        "takes more once they have been left unserved (default: all)", type=int, metavar="K")
    add("--lease-ttl", "5", "seconds the active instance's lease lasts unrenewed: a standby on another machine "
        "takes over this long after the active one dies (on this machine, at once)", type=float,
        metavar="SECONDS")
    add("--redelivered-ids", KEPT, "what the broker's redeliveries carry: kept, the packet id of the first "
        "delivery as MQTT requires (the embedded broker, Mosquitto, EMQX, HiveMQ, one NATS node): every reading "
        "stored once; renumbered, new ids (RabbitMQ, a NATS cluster): readings with a seq, an id or a ts "
        "stored once, those without at least once", choices=REDELIVERED_IDS)


def settings_from_args(ns: argparse.Namespace) -> Settings:
    """The Settings of a namespace parsed with add_settings_arguments (ConfigError if wrong)."""
    broker = parse_broker_url(ns.broker)
    return Settings(
        broker=broker,
        config_path=ns.config,
        db_url=ns.db,
        client_id=ns.client_id if ns.client_id is not None else broker.username or Settings.client_id,
        batch_size=ns.batch_size,
        batch_ms=ns.batch_ms,
        max_payload=ns.max_payload,
        capability_interval=ns.capability_interval,
        ca_file=ns.ca_file,
        cert_file=ns.cert_file,
        key_file=ns.key_file,
        mqtt_version=ns.mqtt_version,
        metrics_host=ns.metrics_host,
        metrics_port=ns.metrics_port,
        sparkplug_host_id=ns.sparkplug_host_id or broker.username or Settings.sparkplug_host_id,
        sparkplug_reorder_timeout=ns.sparkplug_reorder_timeout,
        users=ns.users,
        instance=ns.instance,
        partitions=ns.partitions,
        take=ns.take,
        lease_ttl=ns.lease_ttl,
        redelivered_ids=ns.redelivered_ids,
    )
