"""The SPC workflow over MQTT, as an engineer, on both brokers and both databases: phase I, exclusion of the
points with an assignable cause, frozen limits, monitoring, a new baseline and its recalculation, with the bridge
killed (kill -9) and restarted between the steps. The revised limits published by Montgomery (as printed by
qcc, ../shared/reference) come out of the command path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from bridge.contract import COMMANDS, DEFAULT_REASON_CODES
from bridge.store.audit import APPEND_ONLY
from tests.brokers import BrokerHandle, MqttProbe
from tests.processes import ChildProcess
from tests.stream import query, wait_until
from tests.workflow import (
    OJ, ORANGE_JUICE, VISCOSITY, VISCOSITY_DATA, WAIT, Engineer, assert_published_limits, publish_orange_juice,
    publish_viscosity, start_workflow_bridge, wait_for_samples,
)

VALUES: list[float] = VISCOSITY_DATA["data"]["viscosity"]
PHASE_I, REVISED = VISCOSITY_DATA["cases"][0], VISCOSITY_DATA["cases"][2]
OJ_COUNTS: list[int] = ORANGE_JUICE["data"]["D_nonconforming"]
OJ_SIZES: list[int] = ORANGE_JUICE["data"]["n"]
OJ_PHASE_I, OJ_REVISED = ORANGE_JUICE["cases"][0], ORANGE_JUICE["cases"][2]


def restarted(bridge: ChildProcess) -> ChildProcess:
    """The bridge killed with SIGKILL and started again (same database, same persistent session)."""
    bridge.kill()
    bridge.start()
    return bridge


def audit_rows(database: str) -> list[tuple]:
    """The audit trail as stored."""
    return query(database, 'select id, at, "user", action, characteristic_id, old, new, reason from audit order by id')


def test_the_full_cycle_yields_the_published_revised_limits(broker: BrokerHandle, database: str, tmp_path: Path,
                                                            role_users: Path) -> None:
    """Phase I → exclusion → frozen limits → monitoring → new baseline → recalculation, each step answered and
    published as a new limit set, each surviving a kill -9; history draws the stages; the audit trail holds every
    change, append-only."""
    bridge = start_workflow_bridge(broker, tmp_path, database, role_users)
    try:
        with MqttProbe(broker, user="gauge") as gauge, Engineer(broker) as engineer, \
                Engineer(broker, "operator") as operator:
            # Phase I, with a kill -9 in its middle: the baseline goes on where it was
            publish_viscosity(gauge, VALUES[:10], 1)
            wait_for_samples(database, VISCOSITY, 10)
            restarted(bridge)
            publish_viscosity(gauge, VALUES[10:20], 11)
            publish_orange_juice(gauge, OJ_COUNTS[:30], OJ_SIZES[:30], 1)
            ids = wait_for_samples(database, VISCOSITY, 20)
            oj_ids = wait_for_samples(database, OJ, 30)
            wait_until(lambda: engineer.limits(VISCOSITY).get("phase") == "monitoring", WAIT, "phase I limits")
            assert_published_limits(engineer.limits(VISCOSITY), PHASE_I)
            wait_until(lambda: engineer.limits(OJ).get("phase") == "monitoring", WAIT, "phase I limits of the p chart")
            assert_published_limits(engineer.limits(OJ), OJ_PHASE_I)
            phase_i = engineer.limits(VISCOSITY)["limit_set"]

            # Batch 4 is beyond the UCL: the operator acknowledges it with an assignable cause
            [(violation,)] = query(database, f"select id from violations where sample_id = {ids[3]} and rule_id = 1 "
                                     "and chart = 'i'")
            acked = operator.ok("ack", {"violation_id": violation, "reason_code": "machine",
                                        "reason": "temperature controller failed", "assignable_cause": True})
            assert acked["reason_code"] == "machine" and acked["assignable_cause"] is True
            restarted(bridge)

            # Exclusion: the proposed sample (batch 4), and for the p chart samples 15 and 23 by id; a preview first
            # (the dashboard's proposed limits) changes nothing
            sets_before = query(database, "select count(*) from limit_sets")
            preview = engineer.ok("recalculate", {"characteristic_id": VISCOSITY, "reason": "", "preview": True})
            assert preview["preview"] is True and preview["excluded_sample_ids"] == [ids[3]]
            assert preview["limits"]["name"] == engineer.limits(VISCOSITY)["name"] == "Primer viscosity"
            assert_published_limits(preview["limits"], REVISED)
            assert query(database, "select count(*) from limit_sets") == sets_before
            assert engineer.limits(VISCOSITY)["limit_set"] == phase_i
            revised = engineer.ok("recalculate", {"characteristic_id": VISCOSITY, "reason": "batch 4: controller"})
            assert revised["excluded_sample_ids"] == [ids[3]]
            assert_published_limits(revised["limits"], REVISED)
            oj = engineer.ok("recalculate", {"characteristic_id": OJ, "exclude_sample_ids": [oj_ids[14], oj_ids[22]],
                                             "reason": "15: new cardboard; 23: inexperienced operator"})
            assert_published_limits(oj["limits"], OJ_REVISED)
            assert revised["limits"]["limit_set"]["version"] == phase_i["version"] + 1
            restarted(bridge)
            wait_until(lambda: engineer.limits(VISCOSITY).get("limit_set") == revised["limits"]["limit_set"], WAIT,
                       "the revised limits retained after the restart")
            assert_published_limits(engineer.limits(VISCOSITY), REVISED)

            # Frozen limits: the revised ones fixed in the configuration
            frozen = engineer.ok("set_limits", {"characteristic_id": VISCOSITY, "reason": "freeze the revised limits",
                                                **{k: revised["limits"][k] for k in ("center", "ucl", "lcl")}})
            assert_published_limits(frozen["limits"], REVISED)
            restarted(bridge)

            # Monitoring (phase II): judged by the frozen limit set, which records its first sample
            publish_viscosity(gauge, VALUES[20:], 21)
            ids = wait_for_samples(database, VISCOSITY, len(VALUES))
            wait_until(lambda: engineer.limits(VISCOSITY).get("effective_from") == ids[20], WAIT, "effective_from")
            frozen_set = frozen["limits"]["limit_set"]["version"]
            assert {row[0] for row in query(database, f"select limit_set from samples where id >= {ids[20]} "
                                                      f"and characteristic_id = {VISCOSITY}")} == {frozen_set}

            # A new baseline, killed in its middle, and its recalculation
            baseline = engineer.ok("start_baseline", {"characteristic_id": VISCOSITY, "reason": "new supplier"})
            assert baseline["limits"]["phase"] == "baseline" and baseline["cleared"] == ["center", "ucl", "lcl"]
            publish_viscosity(gauge, VALUES[:10], 101)
            wait_for_samples(database, VISCOSITY, len(VALUES) + 10)
            restarted(bridge)
            publish_viscosity(gauge, VALUES[10:20], 111)
            ids = wait_for_samples(database, VISCOSITY, len(VALUES) + 20)
            wait_until(lambda: engineer.limits(VISCOSITY).get("phase") == "monitoring", WAIT, "the new baseline's limits")
            assert_published_limits(engineer.limits(VISCOSITY), PHASE_I)
            again = engineer.ok("recalculate", {"characteristic_id": VISCOSITY,
                                                "exclude_sample_ids": [ids[len(VALUES) + 3]], "reason": "batch 4 again"})
            assert_published_limits(again["limits"], REVISED)

            # History: every sample with the limit set that judged it, and the limit sets with who and why
            history = engineer.ok("history", {"characteristic_id": VISCOSITY, "limit": 1000})
            assert (history["role"], history["commands"]) == ("engineer", list(COMMANDS))
            assert history["reason_codes"] == list(DEFAULT_REASON_CODES)
            [acknowledged] = [v for v in history["violations"] if v["violation_id"] == violation]
            assert acknowledged["ack"]["ack_user"] == "operator" and acknowledged["ack"]["reason_code"] == "machine"
            assert all(v["ack"] is None for v in history["open_violations"])
            sets = history["limit_sets"]
            assert [s["cause"] for s in sets] == ["import", "baseline", "recalculate", "set_limits", "start_baseline",
                                                  "baseline", "recalculate"]
            assert [s["version"] for s in sets] == list(range(1, 8))
            assert sets[2]["excluded_sample_ids"] == [history["samples"][3]["sample_id"]]
            assert (sets[2]["user"], sets[2]["reason"]) == ("engineer", "batch 4: controller")
            assert [s["limit_set"] for s in history["samples"]] == [2] * 20 + [4] * 15 + [6] * 20
            assert history["limits"]["limit_set"] == again["limits"]["limit_set"]
    finally:
        bridge.stop()

    # The audit trail: every change with its user and reason, never updated or deleted
    trail = audit_rows(database)
    actions = [(row[2], row[3], row[4]) for row in trail]
    assert ("engineer", "limits.recalculate", VISCOSITY) in actions and ("operator", "violation.ack", VISCOSITY) in actions
    assert ("engineer", "characteristic.set_limits", VISCOSITY) in actions
    assert ("engineer", "characteristic.start_baseline", VISCOSITY) in actions
    printed = subprocess.run([sys.executable, "-m", "bridge", "audit", "--db", database, "--characteristic",
                              str(VISCOSITY)], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "engineer  limits.recalculate  characteristic 12  reason: batch 4: controller" in printed
    assert f"characteristic {OJ}" not in printed
    engine = sa.create_engine(database)
    try:
        for statement in ("update audit set reason = 'nothing happened'", "delete from audit"):
            with pytest.raises(DBAPIError, match=APPEND_ONLY), engine.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
    assert audit_rows(database) == trail
    assert json.loads(trail[-1][6])["limit_set"] == 7
