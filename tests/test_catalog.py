"""The characteristics live in the database: a file is applied as a declarative change, engineers create, change
and retire characteristics over MQTT without a restart (the subscriptions follow), and the current set can be
exported as a file that imports again unchanged."""

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bridge.config import load_characteristics
from bridge.service.messages import Inbound
from bridge.service.pipeline import Pipeline
from bridge.store.queries import create_tables, open_database
from tests.brokers import BrokerHandle, MqttProbe
from tests.stream import Gauges, Recorder, assert_nothing_lost_or_doubled, query, wait_until
from tests.stream import CONFIG as STREAM_CONFIG
from tests.workflow import (
    CONFIG, OJ, VISCOSITY, VISCOSITY_TOPIC, WAIT, Engineer, start_workflow_bridge, wait_for_samples,
)

CELL = 21  # a characteristic an engineer creates, on a topic root no other characteristic has
CELL_TOPIC = "cell9/press/force"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=60)


def test_characteristics_are_created_changed_and_retired_over_mqtt(broker: BrokerHandle, tmp_path: Path,
                                                                   role_users: Path) -> None:
    """A created characteristic takes readings on a topic of a new root at once; an update renames it and fixes
    its limits; a retired one takes no more readings and its retained limits are cleared; the export imports
    again as a no-op, and command changes survive a restart with the same file."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = start_workflow_bridge(broker, tmp_path, db, role_users)
    try:
        with Engineer(broker) as engineer, MqttProbe(broker, user="admin") as source:
            created = engineer.ok("characteristic", {"action": "create", "reason": "new press", "characteristic": {
                "id": CELL, "name": "Press force", "topic": CELL_TOPIC, "chart": "imr", "baseline": 5}})
            assert (created["version"], created["limits"]["phase"]) == (1, "baseline")
            for k, value in enumerate([10.0, 10.2, 9.9, 10.1, 9.8, 10.0]):
                source.publish(CELL_TOPIC, json.dumps({"value": value, "seq": k}))
            wait_for_samples(db, CELL, 6)
            changed = engineer.ok("characteristic", {"action": "update", "reason": "fixed by drawing", "characteristic": {
                "id": CELL, "name": "Press force, cell 9", "topic": CELL_TOPIC, "chart": "imr", "baseline": 5,
                "center": 10.0, "sigma": 0.1}})
            assert (changed["version"], changed["limits"]["center"], changed["limits"]["ucl"]) == (2, 10.0, 10.3)
            source.publish(CELL_TOPIC, json.dumps({"value": 10.5, "seq": 6}))
            wait_until(lambda: query(db, f"select count(*) from violations where characteristic_id = {CELL}")[0][0] > 0,
                       WAIT, "a violation against the fixed limits")
            assert engineer.ok("characteristic", {"action": "retire", "reason": "press moved",
                                                  "characteristic": {"id": CELL}})["version"] == 3
            wait_until(lambda: [m.payload for m in engineer.probe.received(f"spc/{CELL}/limits")][-1:] == [b""],
                       WAIT, "the retained limits cleared")
            assert query(db, "select topic_filter from subscriptions order by topic_filter") == [
                ("line/#",), ("spc/bridge/request/+/+",)]
            source.publish(CELL_TOPIC, json.dumps({"value": 10.0, "seq": 7}))
            source.publish(VISCOSITY_TOPIC, json.dumps({"value": 34.0, "seq": 1}))  # after it, on a live topic
            wait_for_samples(db, VISCOSITY, 1)
            assert len(wait_for_samples(db, CELL, 7)) == 7
            engineer.ok("set_limits", {"characteristic_id": VISCOSITY, "center": 34.0, "sigma": 0.5, "reason": "drawing"})
        bridge.stop()
        bridge.start()  # the same file: the command's changes stand
        with Engineer(broker) as engineer:
            assert engineer.ok("history", {"characteristic_id": VISCOSITY, "limit": 1})["limits"]["center"] == 34.0
            assert engineer.ask("history", {"characteristic_id": CELL})["error"] == f"no characteristic {CELL}"
    finally:
        bridge.stop()
    exported = _cli("characteristics", "export", "--db", db)
    assert exported.returncode == 0, exported.stderr
    assert "center = 34.0" in exported.stdout and f"id = {CELL}" not in exported.stdout
    again = tmp_path / "exported.toml"
    again.write_text(exported.stdout)
    trail = query(db, "select count(*) from audit")
    bridge = start_workflow_bridge(broker, tmp_path, db, role_users, again.read_text())
    bridge.stop()
    assert query(db, "select count(*) from audit") == trail
    assert "0 characteristics created, 0 changed, 0 retired, 2 unchanged" in bridge.output()


def test_a_changed_file_is_applied_as_a_declarative_change(broker: BrokerHandle, tmp_path: Path,
                                                          role_users: Path) -> None:
    """Added, changed and removed tables become created, changed (a new limit set when the limits change) and
    retired characteristics, each logged and audited; the same file again changes nothing."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    start_workflow_bridge(broker, tmp_path, db, role_users).stop()
    sets = query(db, f"select count(*) from limit_sets where characteristic_id = {VISCOSITY}")[0][0]
    changed = CONFIG.replace('baseline = 20\n', 'baseline = 20\ncenter = 34.0\nsigma = 0.5\n')
    changed = changed.split("[[characteristic]]")[0] + "[[characteristic]]" + changed.split("[[characteristic]]")[2]
    changed += f'\n[[characteristic]]\nid = {CELL}\nname = "Press force"\ntopic = "{CELL_TOPIC}"\nchart = "imr"\n'
    for run in range(2):
        bridge = start_workflow_bridge(broker, tmp_path, db, role_users, changed)
        try:
            with Engineer(broker) as engineer:
                wait_until(lambda: engineer.limits(VISCOSITY).get("center") == 34.0, WAIT, "the file's limits")
        finally:
            bridge.stop()
        summary = ("1 characteristics created (21), 1 changed (12), 1 retired (11), 0 unchanged" if run == 0
                   else "0 characteristics created, 0 changed, 0 retired, 2 unchanged")
        assert summary in bridge.output(), bridge.output()[-2000:]
    actions = query(db, "select action, characteristic_id from audit where \"user\" like 'file:%' "
                        "and action like 'characteristic.%' order by id")
    assert actions[-3:] == [("characteristic.update", VISCOSITY), ("characteristic.create", CELL),
                            ("characteristic.retire", OJ)]
    assert query(db, f"select count(*) from limit_sets where characteristic_id = {VISCOSITY}")[0][0] == sets + 1
    printed = _cli("audit", "--db", db, "--since", "2000-01-01")
    assert printed.returncode == 0 and "characteristic.retire  characteristic 11  reason: not in" in printed.stdout


def test_commands_while_readings_stream_lose_nothing(broker: BrokerHandle, tmp_path: Path, role_users: Path) -> None:
    """Workflow commands on a characteristic while five gauges stream for 8 s at the bench's live rate (1,000
    readings a second on Mosquitto; 250 on the embedded broker, whose own ceiling is lower: issue 16): each
    command is answered within the stream, and every reading is stored once with its events delivered."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    rate = 1000 if broker.kind == "mosquitto" else 250
    bridge = start_workflow_bridge(broker, tmp_path, db, role_users, STREAM_CONFIG)
    recorder = Recorder(broker)
    gauges = Gauges(broker, total=8 * rate, rate=rate)
    try:
        with Engineer(broker) as engineer:
            gauges.start()
            wait_until(lambda: engineer.limits(1).get("phase") == "monitoring", WAIT, "limits of characteristic 1")
            answers = []
            while not gauges.done.is_set() and len(answers) < 40:
                for command, body in (("recalculate", {"exclude_sample_ids": []}), ("rules", {"rules": [1, 2]}),
                                      ("set_limits", {"sigma": 1.0}), ("start_baseline", {})):
                    answers.append(engineer.ask(command, {"characteristic_id": 1, "reason": "streaming", **body}))
                time.sleep(0.5)  # within a user's 10 commands a second, past which they are answered busy
            gauges.wait(60)
        assert len(answers) >= 8 and all(a["status"] in ("ok", "error") for a in answers), answers
        assert sum(a["status"] == "ok" for a in answers) >= len(answers) // 2, answers
        assert_nothing_lost_or_doubled(gauges, recorder, db)
    finally:
        gauges.close()
        recorder.close()
        bridge.stop()


PARTITIONED = """
[[characteristic]]
id = 1
name = "Shaft length, partition 1"
topic = "plant/shaft"
chart = "imr"
center = 10.0
sigma = 1.0

[[characteristic]]
id = 2
name = "Flange, partition 0"
topic = "plant/flange"
chart = "imr"
center = 5.0
sigma = 1.0

[[characteristic]]
id = 3
name = "Bore, partition 1"
topic = "plant/bore"
chart = "xbar_r"
subgroup_size = 4
center = 10.0
sigma = 1.0
"""


def _partition(db: str, file: Path, text: str, k: int) -> Pipeline:
    """The started pipeline of partition ``k`` of 2 on the characteristics ``text``, written to ``file``."""
    file.write_text(text)
    engine = open_database(db)
    create_tables(engine)
    pipeline = Pipeline(engine, "bridge:test", load_characteristics(file), source=str(file),
                        partition=(k, 2))
    pipeline.start()
    return pipeline


def test_a_changed_file_reaches_the_partition_that_runs_the_characteristic(postgresql_database: str,
                                                                           tmp_path: Path) -> None:
    """Partition 0 applies a changed file first, while partition 1, which runs the changed characteristics,
    still runs the old file and saves their state; started again after it, partition 1 still restates
    them: a new limit set for the new centre, and a bore whose subgroup size changed starts afresh,
    without the values collected under the old size."""
    db, file = postgresql_database, tmp_path / "partitioned.toml"
    _partition(db, file, PARTITIONED, 0).engine.dispose()
    one = _partition(db, file, PARTITIONED, 1)
    at = datetime.now(timezone.utc)

    def fed(pipeline: Pipeline, *readings: tuple[str, str]) -> list[tuple[str, dict]]:
        """The events of a batch of ``readings`` (topic, payload)."""
        start = pipeline.resends.delivered + 1
        done = pipeline.process([Inbound(topic, value.encode(), at, None, mid, False, False)
                                 for mid, (topic, value) in enumerate(readings, start=start)])
        return [(e.topic, json.loads(e.payload)) for e in done.events]

    fed(one, ("plant/shaft", "10.2"), ("plant/bore", "10.1"), ("plant/bore", "9.9"))
    changed = PARTITIONED.replace("center = 10.0\nsigma = 1.0\n\n[[characteristic]]\nid = 2",
                                  "center = 12.0\nsigma = 1.0\n\n[[characteristic]]\nid = 2")
    changed = changed.replace("subgroup_size = 4", "subgroup_size = 3")
    _partition(db, file, changed, 0).engine.dispose()  # applies the file: 1 and 3 changed
    fed(one, ("plant/bore", "10.2"))  # partition 1 under the old file: three values of four, saved
    one.engine.dispose()
    one = _partition(db, file, changed, 1)
    try:
        assert one.by_id[1].assembler.evaluator.limits()[0].center == 12.0
        assert query(db, "select center, cause from limit_sets where characteristic_id = 1 order by version") \
            == [(10.0, "import"), (12.0, "import")]
        bores = [e for topic, e in fed(one, *[("plant/bore", "10.0")] * 3) if topic == "spc/3/sample"]
        assert [(b["n"], b["value"]) for b in bores] == [(3, 10.0)], "a subgroup of old and new values"
    finally:
        one.engine.dispose()
