"""What the SPC workflow's tests share: two characteristics from the published data sets (Montgomery's orange
juice p chart and viscosity individuals chart, in ../shared/reference), a bridge that knows the users' roles, and
an engineer who sends commands and reads their answers."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bridge.contract import request_topic, response_topic
from tests.brokers import BrokerHandle, MqttProbe
from tests.processes import ChildProcess, bridge_process
from tests.spc import test_reference as reference
from tests.stream import query, wait_until

OJ, VISCOSITY = 11, 12
OJ_TOPIC, VISCOSITY_TOPIC = "line/oj/cans", "line/paint/viscosity"
CONFIG = f"""
[[characteristic]]
id = {OJ}
name = "Frozen orange juice cans, nonconforming"
topic = "{OJ_TOPIC}"
chart = "p"
subgroup_size = 50
baseline = 30

[[characteristic]]
id = {VISCOSITY}
name = "Primer viscosity"
topic = "{VISCOSITY_TOPIC}"
chart = "imr"
baseline = 20
"""
ORANGE_JUICE = reference.dataset(reference.ORANGEJUICE)  # Montgomery (1991) pp. 152-155, as printed by qcc
VISCOSITY_DATA = reference.dataset(reference.VISCOSITY)  # Montgomery (2005) pp. 232-235, as printed by qcc
WAIT = 20.0


def published(case: dict[str, Any], name: str) -> tuple[float, float]:
    """A published figure and the tolerance its printed digits give (half a unit in the last digit)."""
    figure = case["expected"][name]
    printed = figure["printed"]
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return figure["value"], 0.5 * 10.0 ** -decimals + 1e-12


def assert_published_limits(limits: dict[str, Any], case: dict[str, Any]) -> None:
    """The centre line and control limits are the published ones, to their printed digits."""
    for name in ("center", "ucl", "lcl"):
        value, tolerance = published(case, name)
        assert abs(limits[name] - value) <= tolerance, (name, limits[name], value)


def start_workflow_bridge(broker: BrokerHandle, tmp_path: Path, database: str, users: Path,
                          config: str = CONFIG) -> ChildProcess:
    """The bridge on ``broker`` with the workflow's characteristics, checking roles against ``users``."""
    path = tmp_path / "workflow.toml"
    path.write_text(config)
    process = bridge_process(tmp_path, broker.url("bridge"), database, path, "bridge:workflow", "--users", str(users))
    process.start()
    return process


class Engineer:
    """An MQTT client logged in as ``user`` that sends requests as ``as_user`` (its own name unless an admin
    speaks for another) and returns their answers; it also records the retained limits."""

    def __init__(self, broker: BrokerHandle, user: str = "engineer", as_user: str | None = None) -> None:
        self.as_user = as_user or user
        self.probe = MqttProbe(broker, user=user, timeout=WAIT)
        self.probe.subscribe(response_topic(self.as_user, "#"))
        self.probe.subscribe("spc/+/limits")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.probe.close()

    def ask(self, command: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
        """Send ``command`` and return its answer (status, data or error)."""
        topic = response_topic(self.as_user, command)
        before = len(self.probe.received(topic))
        self.probe.publish(request_topic(self.as_user, command), body if isinstance(body, bytes) else json.dumps(body))
        answers = self.probe.wait_for(topic, before + 1, timeout=WAIT)
        assert len(answers) > before, f"no answer to {command}"
        answer: dict[str, Any] = json.loads(answers[before].payload)
        return answer

    def ok(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send ``command``; its data, after checking it was carried out."""
        answer = self.ask(command, body)
        assert answer["status"] == "ok", answer
        data: dict[str, Any] = answer["data"]
        return data

    def limits(self, characteristic_id: int) -> dict[str, Any]:
        """The last limits received for a characteristic ({} before any)."""
        messages = [m for m in self.probe.received(f"spc/{characteristic_id}/limits") if m.payload]
        limits: dict[str, Any] = json.loads(messages[-1].payload) if messages else {}
        return limits


def sample_ids(database: str, characteristic_id: int) -> list[int]:
    """The ids of a characteristic's samples, in order."""
    return [row[0] for row in query(database, f"select id from samples where characteristic_id = {characteristic_id} "
                                              "order by idx")]


def wait_for_samples(database: str, characteristic_id: int, count: int) -> list[int]:
    """Wait until a characteristic has ``count`` samples; their ids."""
    wait_until(lambda: len(sample_ids(database, characteristic_id)) >= count, WAIT,
               f"{count} samples of characteristic {characteristic_id}")
    return sample_ids(database, characteristic_id)


def publish_viscosity(gauge: MqttProbe, values: list[float], first_seq: int) -> None:
    """Readings of the viscosity gauge, numbered from ``first_seq``."""
    for seq, value in enumerate(values, first_seq):
        gauge.publish(VISCOSITY_TOPIC, json.dumps({"value": value, "seq": seq}))


def publish_orange_juice(gauge: MqttProbe, counts: list[int], sizes: list[int], first_seq: int) -> None:
    """Samples of the orange juice line: nonconforming cans of ``sizes``."""
    for seq, (count, n) in enumerate(zip(counts, sizes), first_seq):
        gauge.publish(OJ_TOPIC, json.dumps({"count": count, "n": n, "seq": seq}))
