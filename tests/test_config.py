"""The characteristics file, broker URLs and the settings of ``spc-bridge run``."""

import argparse
import json
from pathlib import Path

import pytest

from bridge.config import (
    BrokerUrl, CharacteristicConfig, ConfigError, Settings, add_settings_arguments,
    load_characteristics, parse_broker_url, settings_from_args,
)
from bridge.spc import ChartSpec, Evaluator, RuleSpec

EXAMPLE = Path(__file__).resolve().parents[1] / "characteristics.example.toml"

BORE = '''
[[characteristic]]
id = 1
name = "Bore"
topic = "plant1/line1/bore"
chart = "xbar_r"
subgroup_size = 5
'''


def write(tmp_path: Path, text: str) -> Path:
    """A characteristics file holding text."""
    path = tmp_path / "chars.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    """The ConfigError message of loading text."""
    with pytest.raises(ConfigError) as caught:
        load_characteristics(write(tmp_path, text))
    return str(caught.value)


def toml(value: object) -> str:
    """A Python value written as a TOML value."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml(item)}" for key, item in value.items()) + " }"
    return "nan" if value != value else repr(value)


def second(**keys: object) -> str:
    """BORE followed by a second characteristic (id 7, "Fill") with keys changed."""
    values = {"id": 7, "name": "Fill", "topic": "plant1/line2/fill", "chart": "imr", **keys}
    lines = "\n".join(f"{key} = {toml(value)}" for key, value in values.items())
    return f"{BORE}\n[[characteristic]]\n{lines}\n"


# --- the example file ------------------------------------------------------------------------

def test_example_file_loads_and_builds_engine_specs() -> None:
    bore, fill, leaks, shaft, coating, kepware_bore, kepware_length, node_red = load_characteristics(EXAMPLE)
    assert [c.id for c in (bore, fill, leaks, shaft, coating)] == [1, 2, 3, 4, 5]
    assert [c.field_paths() for c in (bore, fill, leaks, shaft, coating)] == [None] * 5
    assert kepware_bore.topic == kepware_length.topic == "plant1/line3/iotgateway"
    paths = kepware_length.field_paths()
    assert paths is not None and (paths.unit, paths.good_quality, paths.subgroups) == ("ms", (True,), True)
    assert paths.value.expression == "values[?id=='Channel1.Device1.Length'].v | [0]"
    assert node_red.field_paths() is not None and node_red.field_paths().unit == "iso"  # type: ignore[union-attr]
    assert (shaft.chart_spec().fir, coating.chart_spec().lambda_) == (True, 0.2)
    assert bore.chart_spec() == ChartSpec(
        chart="xbar_r", subgroup_size=5, baseline=25, usl=74.05, lsl=73.95,
    )
    spec = fill.chart_spec()
    fixed = (spec.chart, spec.subgroup_size, spec.center, spec.ucl, spec.lcl)
    assert fixed == ("imr", 1, 500.0, 506.0, 497.0)
    assert spec.rules[1] == RuleSpec(2, 8, None, "CRITICAL")
    assert not spec.needs_baseline
    assert (leaks.chart_spec().chart, leaks.chart_spec().subgroup_size) == ("p", 50)
    # the engine takes them: the asymmetric fixed limits monitor from the first sample
    (evaluation,) = Evaluator(spec).add_values([507.0])
    assert evaluation.zone == "beyond_ucl" and evaluation.limits is not None
    assert (evaluation.limits.sd_upper, evaluation.limits.sd_lower) == (2.0, 1.0)


def test_example_file_documents_every_key() -> None:
    comments = [line for line in EXAMPLE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    header = "\n".join(comments)
    keys = [info.alias or name for name, info in CharacteristicConfig.model_fields.items()]
    assert all(f" {key} " in header or f" {key}," in header for key in keys)


def test_example_sparkplug_characteristic_loads_once_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("# [[characteristic]]\n# id = 9"):]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    (gauge,) = load_characteristics(write(tmp_path, uncommented))
    assert gauge.topic is None and gauge.sparkplug is not None
    assert gauge.sparkplug.key == ("Plant1", "Line3", "Gauge7", "Bore/Diameter")


def test_defaults(tmp_path: Path) -> None:
    text = BORE.replace("xbar_r", "c").replace("subgroup_size = 5", "")
    (config,) = load_characteristics(write(tmp_path, text))
    defaults = (config.subgroup_size, config.baseline, config.rules, config.dispersion_rules)
    assert defaults == (1, 25, "nelson", "rule1")
    assert config.chart_spec().rules == ChartSpec().rules


# --- errors name the file, the characteristic and the field -----------------------------------

@pytest.mark.parametrize("keys, field, words", [
    ({"topic": "plant1/+/fill"}, "topic", "wildcard (+ or #)"),
    ({"topic": "plant1/#"}, "topic", "wildcard (+ or #)"),
    ({"topic": "spc/7/sample"}, "topic", "is in spc/#"),
    ({"topic": "spc"}, "topic", "is in spc/#"),
    ({"topic": "plant1/" + "é" * 32765}, "topic", "longer than 65535 bytes"),
    ({"topic": "$SYS/broker"}, "topic", "starts with '$'"),
    ({"topic": "plant1//fill"}, "topic", "empty level"),
    ({"topic": "plant1/fill/"}, "topic", "empty level"),
    ({"chart": "xbar"}, "chart", "unknown chart 'xbar'"),
    ({"chart": "u"}, "subgroup_size", "required for a u chart"),
    ({"subgroup_size": 5}, "subgroup_size", "imr chart has subgroup_size 1"),
    ({"rules": "nelsen"}, "rules", "unknown rule preset 'nelsen'"),
    ({"rules": [1, 9]}, "rules", "unknown rule 9"),
    ({"rules": [1, 1]}, "rules", "rule 1 is listed twice"),
    ({"rules": [1, {"id": 2, "count": 1}]}, "rules", "rule 2: count must be"),
    ({"rules": [{"id": 5, "count": 4}]}, "rules", "rule 5: need 1 <= count <= window"),
    ({"rules": [{"id": 2, "severity": "LOUD"}]}, "rules", "rule 2: severity must be one of"),
    ({"rules": [{"id": 2, "colour": 1}]}, "rules", "rule 2: unknown option(s) ['colour']"),
    ({"rules": [1, 1.5]}, "rules", "expected a preset name"),
    ({"rules": 1}, "rules", "expected a preset name"),
    ({"dispersion_rules": [{"id": 5, "window": "x"}]}, "dispersion_rules", "expected a preset name"),
    ({"center": 10, "lcl": 11}, "lcl", "lcl < center < ucl"),
    ({"center": 10, "ucl": 10}, "ucl", "lcl < center < ucl"),
    ({"ucl": 12}, "ucl", "need a fixed center"),
    ({"sigma": 0}, "sigma", "positive"),
    ({"sigma_method": "binomial"}, "sigma_method", "does not apply to a imr chart"),
    ({"usl": 1, "lsl": 2}, "lsl", "usl must be above lsl"),
    ({"baseline": 1}, "baseline", "at least 2"),
    ({"center": float("nan")}, "center", "finite"),
    ({"center": "10"}, "center", "Input should be a valid number (got '10')"),
    ({"colour": "red"}, "colour", "unknown key"),
])
def test_error_names_file_characteristic_and_field(
    tmp_path: Path, keys: dict[str, object], field: str, words: str
) -> None:
    message = load_error(tmp_path, second(**keys))
    assert message.startswith(f'{tmp_path / "chars.toml"}: characteristic #2 (id 7, "Fill"): {field}: ')
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize("keys, shown, words", [
    ({"id": 0}, '(id 0, "Fill"): id: ', "Input should be greater than 0 (got 0)"),
    ({"id": True}, '("Fill"): id: ', "Input should be a valid integer (got True)"),
    ({"name": " "}, '(id 7, " "): name: ', "must not be empty"),
])
def test_bad_id_or_name_is_shown_as_written(
    tmp_path: Path, keys: dict[str, object], shown: str, words: str
) -> None:
    message = load_error(tmp_path, second(**keys))
    assert f"characteristic #2 {shown}{words}" in message


def test_errors_of_every_characteristic_are_reported_together(tmp_path: Path) -> None:
    text = second(topic="a/+", sigma=-1).replace('chart = "xbar_r"', 'chart = "xbar_r"\ncolour = 1')
    message = load_error(tmp_path, text)
    assert 'characteristic #1 (id 1, "Bore"): colour: unknown key' in message
    assert 'characteristic #2 (id 7, "Fill"): topic: ' in message
    assert 'characteristic #2 (id 7, "Fill"): sigma: sigma must be positive' in message


def test_asymmetric_fixed_limits_are_allowed(tmp_path: Path) -> None:
    (_, fill) = load_characteristics(write(tmp_path, second(center=10, ucl=16, lcl=7)))
    assert (fill.chart_spec().ucl, fill.chart_spec().lcl) == (16.0, 7.0)


def test_duplicate_id_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, second(id=1))
    assert message.endswith(': characteristic #2 (id 1, "Fill"): id: 1 is already the id of '
                            'characteristic #1 (id 1, "Bore")')


def test_duplicate_topic_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, second(topic="plant1/line1/bore"))
    assert ': characteristic #2 (id 7, "Fill"): topic: \'plant1/line1/bore\' is already the topic of ' \
           'characteristic #1 (id 1, "Bore"); characteristics share a topic only when each selects its ' \
           'reading with value_path, and this one has none' in message


def test_characteristic_without_id_or_name_is_named_by_index(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[[characteristic]]\ntopic = "a/b"\nchart = "imr"\n')
    path = tmp_path / "chars.toml"
    assert message == f"{path}: characteristic #1: id: required; characteristic #1: name: required"


def test_wrong_types_are_not_coerced(tmp_path: Path) -> None:
    message = load_error(tmp_path, second().replace("id = 7", 'id = "7"'))
    assert 'characteristic #2 ("Fill"): id: Input should be a valid integer' in message


@pytest.mark.parametrize("text, words", [
    ("", "no characteristics"),
    ("# nothing yet\n", "no characteristics"),
    ('[characteristic]\nid = 1\n', "[[characteristic]] table (double brackets)"),
    ('[[characteristics]]\nid = 1\n', "unknown top-level key(s) characteristics"),
    ('[[characteristic]]\nid = \n', "not valid TOML"),
])
def test_file_level_errors(tmp_path: Path, text: str, words: str) -> None:
    message = load_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'chars.toml'}: ")
    assert words in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml: no such file"):
        load_characteristics(tmp_path / "nope.toml")


# --- sources: topic or sparkplug, and the field paths of vendor JSON --------------------------

GAUGE7 = {"group_id": "Plant1", "edge_node_id": "Line3", "device_id": "Gauge7", "metric": "Bore/Diameter"}


def metric(**keys: object) -> str:
    """BORE followed by a Sparkplug characteristic (id 7, "Fill") with keys changed."""
    values = {"id": 7, "name": "Fill", "sparkplug": GAUGE7, "chart": "imr", **keys}
    lines = "\n".join(f"{key} = {toml(value)}" for key, value in values.items() if value is not None)
    return f"{BORE}\n[[characteristic]]\n{lines}\n"


TAG = "values[?id=='Channel1.Device1.Fill']"


@pytest.mark.parametrize("text, field, words", [
    (second(sparkplug=GAUGE7), "topic", "give either topic (the MQTT topic the gauge publishes on) or sparkplug"),
    (metric(sparkplug=None), "topic", "required: the MQTT topic the gauge publishes on, or instead sparkplug ="),
    (metric(value_path="v"), "value_path", "only with topic: a Sparkplug metric carries its own value"),
    (metric(sparkplug={**GAUGE7, "group_id": "Plant/1"}), "sparkplug.group_id",
     "'Plant/1' must not contain '+', '/', '#' or U+0000: a Sparkplug id is one level of its topics"),
    (metric(sparkplug={**GAUGE7, "edge_node_id": "Line+3"}), "sparkplug.edge_node_id", "'Line+3' must not contain"),
    (metric(sparkplug={**GAUGE7, "device_id": "#"}), "sparkplug.device_id", "'#' must not contain"),
    (metric(sparkplug={**GAUGE7, "device_id": ""}), "sparkplug.device_id", "'' must not be empty"),
    (metric(sparkplug={**GAUGE7, "group_id": "a\u0000"}), "sparkplug.group_id", "U+0000"),
    (metric(sparkplug={**GAUGE7, "metric": ""}), "sparkplug.metric", "must not be empty"),
    (metric(sparkplug={**GAUGE7, "edge_node_id": "é" * 33000}), "sparkplug", "longer than 65535 bytes"),
    (metric(sparkplug={"group_id": "Plant1", "edge_node_id": "Line3"}), "sparkplug.metric", "required"),
    (metric(sparkplug={**GAUGE7, "alias": 3}), "sparkplug.alias",
     "unknown key; the keys are group_id, edge_node_id, device_id, metric, n_metric"),
    (metric(sparkplug="Plant1/Line3"), "sparkplug", "write it as a table: sparkplug = { group_id"),
    (metric(sparkplug={**GAUGE7, "n_metric": "Bore/Count"}), "sparkplug.n_metric",
     "only p, np and u charts take a sample size per sample (not a imr chart)"),
    (second(value_path=f"{TAG}.v |"), "value_path", "not a JMESPath expression: Invalid jmespath expression: "
                                                     "Incomplete expression"),
    (second(value_path="values[?id==]"), "value_path",
     'not a JMESPath expression: invalid token: Parse error at column 12, token "]" (RBRACKET)'),
    (second(value_path="v", timestamp_path="$t"), "timestamp_path",
     "not a JMESPath expression: Bad jmespath expression: Unknown token $ at column 0"),
    (second(value_path="v", quality_path="lenght(q)"), "quality_path",
     "not a usable JMESPath expression: unknown function lenght()"),
    (second(value_path="v", seq_path="join(s)"), "seq_path",
     "not a usable JMESPath expression: function join() takes 2 argument(s), given 1"),
    (second(value_path="values[?id=='a\u0000']"), "value_path", "must not contain the character U+0000"),
    (second(value_path=""), "value_path", "not a JMESPath expression: Invalid JMESPath expression: cannot be empty"),
    (second(timestamp_path="t"), "timestamp_path", "needs value_path (without it the topic's payloads are the "
                                                   'bridge\'s JSON readings: a number, "value", "values" or "count")'),
    (second(value_path="v", timestamp_unit="ms"), "timestamp_unit", "needs timestamp_path"),
    (second(value_path="v", timestamp_path="t", timestamp_unit="us"), "timestamp_unit",
     "Input should be 'iso', 's' or 'ms' (got 'us')"),
    (second(value_path="v", good_quality=[True]), "good_quality", "needs quality_path"),
    (second(value_path="v", quality_path="q", good_quality=[]), "good_quality", "expected a non-empty list"),
    (second(value_path="v", quality_path="q", good_quality=True), "good_quality", "expected a non-empty list"),
    (second(value_path="v", quality_path="q", good_quality=[[1]]), "good_quality", "expected a non-empty list"),
    (second(value_path="v", n_path="n"), "n_path", "only p, np and u charts take a sample size per sample"),
    (second(value_path="v", n_path="n", chart="c"), "n_path", "(not a c chart)"),
    (second(colour="red"), "colour", "value_path, timestamp_path, timestamp_unit, quality_path, good_quality, "
                                     "n_path, seq_path, chart"),
])
def test_source_errors_name_the_key(tmp_path: Path, text: str, field: str, words: str) -> None:
    message = load_error(tmp_path, text)
    assert message.startswith(f'{tmp_path / "chars.toml"}: characteristic #2 (id 7, "Fill"): {field}: '), message
    assert words in message, message
    assert "\n" not in message


def test_field_paths_are_compiled_with_their_defaults(tmp_path: Path) -> None:
    text = second(value_path=f"{TAG}.v | [0]", quality_path=f"{TAG}.q | [0]", seq_path="s",
                  timestamp_path="t", timestamp_unit="s") + second(
        id=8, name="Rejects", topic="plant1/line2/rejects", chart="u", subgroup_size=5, value_path="count",
        n_path="n", quality_path="q", good_quality=[192, "Good", 1.5, False]).removeprefix(BORE)
    bore, fill, rejects = load_characteristics(write(tmp_path, text))
    assert bore.field_paths() is None
    paths = fill.field_paths()
    assert paths is not None
    shown = (paths.value.expression, paths.quality and paths.quality.expression, paths.seq and paths.seq.expression)
    assert shown == (f"{TAG}.v | [0]", f"{TAG}.q | [0]", "s")
    assert (paths.unit, paths.good_quality, paths.n, paths.attribute, paths.subgroups) == ("s", (True,), None,
                                                                                         False, False)
    counted = rejects.field_paths()
    assert counted is not None and (counted.attribute, counted.subgroups) == (True, False)
    assert counted.good_quality == (192, "Good", 1.5, False) and counted.unit == "iso"
    assert [type(good) for good in counted.good_quality] == [int, str, float, bool]


def test_characteristics_share_a_topic_when_each_has_a_value_path(tmp_path: Path) -> None:
    topic = "plant1/line3/iotgateway"
    tables = [second(id=10 + k, name=f"Tag {k}", topic=topic, value_path=f"values[{k}].v").removeprefix(BORE)
              for k in range(3)]
    configs = load_characteristics(write(tmp_path, 'ingest_roots = ["plant1/#"]\n' + BORE + "".join(tables)))
    assert [c.topic for c in configs[1:]] == [topic] * 3
    # one of them without value_path: the one that lacks it is named
    lacking = second(id=13, name="Plain", topic=topic).removeprefix(BORE)
    message = load_error(tmp_path, BORE + "".join(tables) + lacking)
    assert ('characteristic #5 (id 13, "Plain"): topic: \'plant1/line3/iotgateway\' is already the topic of '
            'characteristic #2 (id 10, "Tag 0"); characteristics share a topic only when each selects its reading '
            'with value_path, and this one has none') in message
    first_lacks = load_error(tmp_path, second(value_path="v", topic="plant1/line1/bore"))
    assert first_lacks.endswith('and characteristic #1 (id 1, "Bore") has none')


def test_a_sparkplug_metric_feeds_one_characteristic(tmp_path: Path) -> None:
    message = load_error(tmp_path, metric() + metric(id=8, name="Again").removeprefix(BORE))
    assert message.endswith('characteristic #3 (id 8, "Again"): sparkplug: metric \'Bore/Diameter\' of '
                            'Plant1/Line3/Gauge7 is already the source of characteristic #2 (id 7, "Fill")')
    node_metric = {key: value for key, value in GAUGE7.items() if key != "device_id"}
    others = (metric(id=8, name="Node", sparkplug=node_metric)
              + metric(id=9, name="Gauge 8", sparkplug={**GAUGE7, "device_id": "Gauge8"})
              + metric(id=10, name="Rejects", chart="p", subgroup_size=50,
                       sparkplug={**GAUGE7, "metric": "Bore/Rejects", "n_metric": "Bore/Inspected"})
              ).replace(BORE, "")
    configs = load_characteristics(write(tmp_path, metric() + others))
    assert [c.sparkplug.key for c in configs[1:] if c.sparkplug] == [
        ("Plant1", "Line3", "Gauge7", "Bore/Diameter"), ("Plant1", "Line3", None, "Bore/Diameter"),
        ("Plant1", "Line3", "Gauge8", "Bore/Diameter"), ("Plant1", "Line3", "Gauge7", "Bore/Rejects")]
    assert configs[-1].sparkplug is not None and configs[-1].sparkplug.n_metric == "Bore/Inspected"


def test_ingest_roots_cover_the_topics_only(tmp_path: Path) -> None:
    """Sparkplug characteristics have no topic: the ingest roots need not (and cannot) cover them."""
    configs = load_characteristics(write(tmp_path, 'ingest_roots = ["plant1/#"]\n' + metric()))
    assert configs.ingest_roots == ("plant1/#",) and len(configs) == 2
    only_metrics = metric().replace(BORE, "")
    message = load_error(tmp_path, 'ingest_roots = ["plant1/#"]\n' + only_metrics)
    assert message.endswith("ingest_roots: 'plant1/#' cover(s) no characteristic's topic: remove it or fix the "
                            "topic")


def test_serialised_config_round_trips(tmp_path: Path) -> None:
    """What the database keeps of a characteristic (model_dump_json) loads again as the same characteristic."""
    paths = {"value_path": f"{TAG}.v | [0]", "timestamp_path": f"{TAG}.t | [0]", "timestamp_unit": "ms",
             "quality_path": f"{TAG}.q | [0]", "good_quality": [True, 192, 1.5, "Good"], "seq_path": "s"}
    text = (second(**paths, **{"lambda": 0.3}).replace('chart = "imr"', 'chart = "ewma"')
            + metric(id=8, name="Rejects", chart="np", subgroup_size=50,
                     sparkplug={**GAUGE7, "n_metric": "Bore/Inspected"}).removeprefix(BORE))
    configs = load_characteristics(write(tmp_path, text))
    assert [c.chart for c in configs] == ["xbar_r", "ewma", "np"]
    for config in configs:
        for again in (CharacteristicConfig.model_validate_json(config.model_dump_json()),
                      CharacteristicConfig.model_validate(config.model_dump())):
            assert again == config and again.chart_spec() == config.chart_spec()
            assert again.field_paths() == config.field_paths()
    fill = configs[1].field_paths()
    assert fill is not None and (fill.unit, fill.good_quality) == ("ms", (True, 192, 1.5, "Good"))


# --- ingest_roots ----------------------------------------------------------------------------

def test_ingest_roots_are_read_from_the_top_of_the_file(tmp_path: Path) -> None:
    configs = load_characteristics(write(tmp_path, 'ingest_roots = ["plant1/line1/#", "plant1/line2/+"]\n'
                                                   + second()))
    assert configs.ingest_roots == ("plant1/line1/#", "plant1/line2/+") and len(configs) == 2
    assert load_characteristics(write(tmp_path, BORE)).ingest_roots == ()  # derived by the bridge


@pytest.mark.parametrize("roots, words", [
    ('"plant1/#"', "ingest_roots: write it as a list of topic filters"),
    ('[1]', "ingest_roots: write it as a list of topic filters"),
    ('["plant1/#/x"]', "'+' must be a whole level and '#' the whole last level"),
    ('["#"]', "'#' would also catch the bridge's own spc/... events"),
    ('["spc/#", "plant1/#"]', "'spc/#' would also catch the bridge's own spc/... events"),
    ('["plant1/line1/#"]', "ingest_roots: 1 characteristic topic(s) under no root, e.g. 'plant1/line2/fill'"),
    ('["plant1/#", "plant1/line2/#"]', "'plant1/line2/fill' ('plant1/#' and 'plant1/line2/#')"),
    ('["plant1/#", "plant9/#"]', "'plant9/#' cover(s) no characteristic's topic"),
])
def test_bad_ingest_roots(tmp_path: Path, roots: str, words: str) -> None:
    assert words in load_error(tmp_path, f"ingest_roots = {roots}\n{second()}")


def test_ingest_roots_below_a_table_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, f'{BORE}ingest_roots = ["plant1/#"]\n')
    assert "characteristic #1 (id 1, \"Bore\"): ingest_roots: put it at the top of the file" in message


def test_config_is_frozen() -> None:
    (config, *_) = load_characteristics(EXAMPLE)
    with pytest.raises(ValueError):
        config.id = 9
    assert CharacteristicConfig.model_validate(config.model_dump()).chart_spec() == config.chart_spec()


# --- broker URLs -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("mqtt://127.0.0.1", BrokerUrl("mqtt", "127.0.0.1", 1883)),
    ("mqtt://user:pass@127.0.0.1:1884", BrokerUrl("mqtt", "127.0.0.1", 1884, "user", "pass")),
    ("mqtts://localhost", BrokerUrl("mqtts", "localhost", 8883)),
    ("ws://127.0.0.1", BrokerUrl("ws", "127.0.0.1", 9001, path="/mqtt")),
    ("ws://127.0.0.1:8080/", BrokerUrl("ws", "127.0.0.1", 8080, path="/")),
    ("wss://u@[::1]/broker", BrokerUrl("wss", "::1", 9443, "u", None, "/broker")),
    ("MQTT://127.0.0.1:1883/", BrokerUrl("mqtt", "127.0.0.1", 1883)),
])
def test_broker_urls(text: str, expected: BrokerUrl) -> None:
    assert parse_broker_url(text) == expected


def test_transport_and_tls() -> None:
    kinds = {s: parse_broker_url(f"{s}://127.0.0.1") for s in ("mqtt", "mqtts", "ws", "wss")}
    assert {s: (u.transport, u.tls) for s, u in kinds.items()} == {
        "mqtt": ("tcp", False), "mqtts": ("tcp", True),
        "ws": ("websockets", False), "wss": ("websockets", True),
    }


def test_url_encoded_credentials_are_decoded() -> None:
    url = parse_broker_url("mqtt://op%40line1:p%3Aa%2Fs%40s%25@127.0.0.1")
    assert (url.username, url.password) == ("op@line1", "p:a/s@s%")


def test_password_is_never_shown() -> None:
    url = parse_broker_url("ws://op%40line1:s3cret@127.0.0.1:9001/mqtt")
    assert str(url) == "ws://op%40line1:***@127.0.0.1:9001/mqtt"
    assert repr(url) == "BrokerUrl('ws://op%40line1:***@127.0.0.1:9001/mqtt')"
    assert "s3cret" not in f"{url} {url!r} {[url]}"
    assert str(parse_broker_url("mqtt://[::1]")) == "mqtt://[::1]:1883"


@pytest.mark.parametrize("text, words", [
    ("http://127.0.0.1", "unknown scheme 'http'"),
    ("127.0.0.1:1883", "unknown scheme"),
    ("mqtt://", "has no host"),
    ("mqtt://u:pw@:1883", "has no host"),
    ("mqtt://127.0.0.1:http", "port must be a number 1..65535"),
    ("mqtt://127.0.0.1:70000", "port must be a number 1..65535"),
    ("mqtt://127.0.0.1:0", "port must be a number 1..65535"),
    ("mqtt://127.0.0.1/topic", "only ws:// and wss:// URLs have a path"),
    ("ws://127.0.0.1/mqtt?x=1", "query or fragment"),
    ("mqtt://:pw@127.0.0.1", "a password needs a user name"),
])
def test_bad_broker_urls(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match="broker URL") as caught:
        parse_broker_url(text)
    assert words in str(caught.value)
    assert "pw" not in str(caught.value)


# --- settings of `spc-bridge run` ------------------------------------------------------------

ENV_NAMES = [
    "BROKER", "DB", "CONFIG", "CLIENT_ID", "BATCH_SIZE", "BATCH_MS", "MAX_PAYLOAD", "CA_FILE",
    "CERT_FILE", "KEY_FILE", "MQTT_VERSION",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SPC_BRIDGE_* variable from the calling shell."""
    for name in ENV_NAMES:
        monkeypatch.delenv(f"SPC_BRIDGE_{name}", raising=False)
    return monkeypatch


def parse(argv: list[str]) -> Settings:
    """Settings from a command line, with defaults from the environment as it is now."""
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


def test_settings_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = parse(["--config", "chars.toml"])
    assert settings == Settings(broker=BrokerUrl("mqtt", "127.0.0.1", 1883), config_path=Path("chars.toml"))
    assert (settings.db_url, settings.client_id, settings.batch_size, settings.batch_ms) == (
        "sqlite:///spc.db", "spc-bridge", 500, 0.0)
    assert (settings.max_payload, settings.mqtt_version, settings.ca_file) == (65536, "3.1.1", None)


def test_settings_from_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    values = {
        "BROKER": "wss://bridge:pw@127.0.0.1", "DB": "postgresql+psycopg://spc:dbpw@127.0.0.1:5432/test",
        "CONFIG": "/etc/spc/chars.toml", "CLIENT_ID": "bridge-2", "BATCH_SIZE": "100", "BATCH_MS": "5.5",
        "MAX_PAYLOAD": "1024", "CA_FILE": str(ca), "MQTT_VERSION": "5", "SPARKPLUG_REORDER_TIMEOUT": "0.5",
        "REDELIVERED_IDS": "renumbered",
    }
    for name, value in values.items():
        clean_env.setenv(f"SPC_BRIDGE_{name}", value)
    settings = parse([])
    assert settings == Settings(
        broker=BrokerUrl("wss", "127.0.0.1", 9443, "bridge", "pw", "/mqtt"),
        db_url="postgresql+psycopg://spc:dbpw@127.0.0.1:5432/test", config_path=Path("/etc/spc/chars.toml"),
        client_id="bridge-2", batch_size=100, batch_ms=5.5, max_payload=1024, ca_file=ca, mqtt_version="5",
        sparkplug_host_id="bridge", sparkplug_reorder_timeout=0.5,  # the host id: the broker URL's user name
        redelivered_ids="renumbered",
    )
    assert "pw" not in repr(settings)
    # the command line wins over the environment
    given = parse(["--batch-size", "7", "--broker", "wss://127.0.0.1:1999"])
    assert (given.batch_size, given.broker.port, given.client_id) == (7, 1999, "bridge-2")


def test_config_is_required_without_environment(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse([])
    assert "--config" in capsys.readouterr().err


@pytest.mark.parametrize("env, value, words", [
    ("BATCH_SIZE", "0", "batch-size: must be at least 1"),
    ("BATCH_MS", "-1", "batch-ms: must be"),
    ("MAX_PAYLOAD", "0", "max-payload: must be"),
    ("MQTT_VERSION", "4", "mqtt-version: must be one of 3.1.1, 5"),
    ("BROKER", "tcp://127.0.0.1", "unknown scheme 'tcp'"),
    ("DB", "spc.db", "db: not a database URL"),
    ("CA_FILE", "ca.pem", "ca-file: given, but the broker URL mqtt://127.0.0.1:1883 is not mqtts://"),
    ("SPARKPLUG_HOST_ID", "line/3", "sparkplug-host-id: must not contain '+', '/', '#'"),
    ("SPARKPLUG_REORDER_TIMEOUT", "0", "sparkplug-reorder-timeout: must be a finite number of seconds > 0"),
    ("REDELIVERED_IDS", "new", "redelivered-ids: must be one of kept, renumbered, got 'new'"),
])
def test_bad_settings(clean_env: pytest.MonkeyPatch, env: str, value: str, words: str) -> None:
    clean_env.setenv(f"SPC_BRIDGE_{env}", value)
    with pytest.raises(ConfigError) as caught:
        parse(["--config", "c.toml"])
    assert words in str(caught.value)


def test_empty_client_id_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="client-id: must be 1 to 65535 bytes"):
        parse(["--config", "c.toml", "--client-id", ""])


def test_tls_files_must_exist_and_key_needs_certificate(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = tmp_path / "client.key"
    key.write_text("key", encoding="utf-8")
    base = ["--config", "c.toml", "--broker", "mqtts://127.0.0.1"]
    with pytest.raises(ConfigError, match="key-file: given without cert-file"):
        parse([*base, "--key-file", str(key)])
    with pytest.raises(ConfigError, match="cert-file: .*missing.pem: no such file"):
        parse([*base, "--cert-file", str(tmp_path / "missing.pem")])
    assert parse([*base, "--cert-file", str(key), "--key-file", str(key)]).key_file == key
