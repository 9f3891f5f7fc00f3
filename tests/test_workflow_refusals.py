"""What the workflow's commands refuse, with a clear answer and nothing half-applied: other roles (checked by the
bridge too, beside the broker's ACL), unknown characteristics, invalid limits, exclusions that cannot be, changes
that would make a chart invalid, and an import file with errors."""

import subprocess
import sys
from pathlib import Path

from tests.brokers import BrokerHandle, MqttProbe
from tests.credentials import ROLE_USERS
from tests.stream import query
from tests.workflow import (
    CONFIG, OJ, OJ_TOPIC, VISCOSITY, VISCOSITY_DATA, Engineer, publish_viscosity, start_workflow_bridge,
    wait_for_samples,
)

VALUES: list[float] = VISCOSITY_DATA["data"]["viscosity"]
ALLOWED = {"engineer", "admin"}


def what_changed(db: str) -> list[list[tuple]]:
    """Everything a workflow command writes: the audit trail, the limit sets, the characteristics."""
    return [query(db, "select count(*) from audit"), query(db, "select count(*) from limit_sets"),
            query(db, "select id, config, version, retired from characteristics order by id")]


def test_every_other_role_is_refused_by_the_bridge(broker: BrokerHandle, tmp_path: Path, role_users: Path) -> None:
    """Requests that only an admin could place under another user's name (the broker's ACL drops them from the
    users themselves: tests/test_engineer_role.py) are refused by the bridge for every role but engineer and
    admin, and for a user it does not know; nothing changes."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = start_workflow_bridge(broker, tmp_path, db, role_users)
    try:
        before = what_changed(db)
        request = {"characteristic_id": VISCOSITY, "reason": "who may"}
        for name in [user.name for user in ROLE_USERS if user.role not in ALLOWED] + ["nobody"]:
            with Engineer(broker, "admin", as_user=name) as admin:
                answer = admin.ask("start_baseline", request)
            assert answer == {"status": "error", "data": {}, "transaction": None,
                              "error": f"{name} may not send start_baseline: its role does not allow it"}, name
        assert what_changed(db) == before
        with Engineer(broker) as engineer:
            assert engineer.ok("start_baseline", request)["limits"]["phase"] == "baseline"
        with Engineer(broker, "admin") as admin:
            assert admin.ok("start_baseline", request)["limits"]["phase"] == "baseline"
    finally:
        bridge.stop()


BAD_REQUESTS = [
    ("unknown characteristic", "recalculate", {"characteristic_id": 999, "reason": "r"}, "no characteristic 999"),
    ("no reason", "set_limits", {"characteristic_id": VISCOSITY, "center": 34, "reason": "  "},
     "a reason is required"),
    ("lcl above ucl", "set_limits", {"characteristic_id": VISCOSITY, "center": 34, "lcl": 36, "ucl": 35, "reason": "r"},
     "lcl 36 must be below ucl 35"),
    ("ucl without a centre", "set_limits", {"characteristic_id": VISCOSITY, "ucl": 36, "reason": "r"},
     "fixed ucl/lcl need a fixed center"),
    ("negative sigma", "set_limits", {"characteristic_id": VISCOSITY, "sigma": -1, "reason": "r"},
     "sigma must be positive"),
    ("no limit given", "set_limits", {"characteristic_id": VISCOSITY, "reason": "r"},
     "give at least one of center, ucl, lcl, sigma"),
    ("unknown rule", "rules", {"characteristic_id": VISCOSITY, "rules": [1, 42], "reason": "r"}, "rules"),
    ("an unknown preset", "rules",
     {"characteristic_id": OJ, "dispersion_rules": "none of these", "reason": "r"}, "dispersion_rules"),
    ("a sample that does not exist", "recalculate",
     {"characteristic_id": VISCOSITY, "exclude_sample_ids": [10**9], "reason": "r"}, "unknown sample id(s) [1000000000]"),
    ("the p chart still in its baseline", "recalculate", {"characteristic_id": OJ, "reason": "r"},
     "characteristic 11 is still in its baseline (1 of 30 samples)"),
    ("a chart left without subgroup size", "characteristic",
     {"action": "update", "characteristic": {"id": VISCOSITY, "name": "x", "topic": "line/x", "chart": "xbar_r"},
      "reason": "r"}, "subgroup_size"),
    ("an id that exists", "characteristic",
     {"action": "create", "characteristic": {"id": OJ, "name": "x", "topic": "line/x", "chart": "imr"},
      "reason": "r"}, "characteristic 11 exists (running; update it instead)"),
    ("a topic that is taken", "characteristic",
     {"action": "create", "characteristic": {"id": 99, "name": "x", "topic": OJ_TOPIC, "chart": "imr"},
      "reason": "r"}, f"topic: '{OJ_TOPIC}' is already the topic of characteristic {OJ}"),
    ("a Sparkplug metric", "characteristic",
     {"action": "create", "characteristic": {"id": 99, "name": "x", "chart": "imr", "sparkplug": {
         "group_id": "G", "edge_node_id": "N", "metric": "m"}}, "reason": "r"}, "through the file"),
    ("retire what does not exist", "characteristic",
     {"action": "retire", "characteristic": {"id": 98}, "reason": "r"}, "no characteristic 98"),
]


def test_bad_requests_are_refused_and_change_nothing(broker: BrokerHandle, tmp_path: Path, role_users: Path) -> None:
    """Each bad request is an error that says what is wrong; the database and the running chart are as before,
    and a good command afterwards still works."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bridge = start_workflow_bridge(broker, tmp_path, db, role_users)
    try:
        with MqttProbe(broker, user="gauge") as gauge, Engineer(broker) as engineer:
            publish_viscosity(gauge, VALUES[:20], 1)
            gauge.publish(OJ_TOPIC, '{"count": 3, "n": 50}')
            ids = wait_for_samples(db, VISCOSITY, 20)
            [oj_sample] = wait_for_samples(db, OJ, 1)
            limits = engineer.limits(VISCOSITY)
            before = what_changed(db)
            cases = [*BAD_REQUESTS,
                     ("a sample of another characteristic", "recalculate",
                      {"characteristic_id": VISCOSITY, "exclude_sample_ids": [oj_sample], "reason": "r"},
                      f"sample(s) [{oj_sample}] belong to characteristic(s) [{OJ}], not to {VISCOSITY}"),
                     ("every sample", "recalculate",
                      {"characteristic_id": VISCOSITY, "exclude_sample_ids": ids, "reason": "r"},
                      "too few baseline samples left to estimate the limits")]
            for case, command, body, error in cases:
                answer = engineer.ask(command, body)
                assert answer["status"] == "error" and error in answer["error"], (case, answer)
                assert what_changed(db) == before, case
            assert engineer.limits(VISCOSITY) == limits
            revised = engineer.ok("recalculate", {"characteristic_id": VISCOSITY, "exclude_sample_ids": [ids[3]],
                                                  "reason": "batch 4"})
            assert revised["limits"]["limit_set"]["version"] == limits["limit_set"]["version"] + 1
    finally:
        bridge.stop()


def test_an_import_file_with_errors_applies_nothing_and_lists_every_error(tmp_path: Path) -> None:
    """`spc-bridge run --config` with a broken file stops before it touches the database, naming each error."""
    db = f"sqlite:///{tmp_path / 'spc.db'}"
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace('chart = "p"', 'chart = "q"').replace("baseline = 20", "baseline = 1"))
    done = subprocess.run([sys.executable, "-m", "bridge", "run", "--config", str(bad), "--db", db,
                           "--broker", "mqtt://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "unknown chart 'q'" in done.stderr and "baseline must be at least 2" in done.stderr, done.stderr
    assert not (tmp_path / "spc.db").exists()
