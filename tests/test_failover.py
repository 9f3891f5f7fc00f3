"""Instances of one logical bridge (bridge.service.failover) as real processes on Mosquitto and PostgreSQL:
a standby takes over within 10 s of a kill -9 of the active one, five times during a stream, with nothing
lost or doubled; a paused active instance that wakes after losing its lease commits nothing and takes no
session back; rule windows continue across a take-over; three processes on six partitions, started one after another, share them two each, serve
each request once and, when one is killed, its partitions are served again within 10 s; a standby's health check passes and its metrics say it is not
active."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from queue import SimpleQueue

from bridge.config import parse_broker_url
from bridge.contract import INSTANCE_FILTER, STATE_TOPIC, instance_topic, request_topic, response_topic
from bridge.service.mqtt import MqttLink
from tests.brokers import BrokerHandle, MqttProbe, free_port
from tests.processes import BRIDGE_CLIENT_ID, STOP_TIMEOUT, ChildProcess
from tests.stream import TOPICS, Gauges, Recorder, assert_nothing_lost_or_doubled, query, wait_until, write_config
from tests.test_bridge_e2e import payloads
from tests.test_bridge_e2e import write_config as write_file
from tests.test_bridge_restart import CONFIG as RESTART_CONFIG
from tests.test_metrics import health, scrape

TAKE_OVER_S = 10.0
CONNECTED = "MQTT Connected"


def instance(tmp_path: Path, broker: BrokerHandle, db: str, name: str, *extra: str,
             config: Path | None = None) -> ChildProcess:
    """``spc-bridge run --instance <name>`` of the stream's bridge, or of the characteristics file ``config``
    (not started), with a log of its own."""
    return ChildProcess(["run", "--broker", broker.url("bridge"), "--db", db,
                         "--config", str(config or write_config(tmp_path)),
                         "--client-id", BRIDGE_CLIENT_ID, "--instance", name, *extra],
                        tmp_path / f"{name}.log", CONNECTED)


def start_standby(process: ChildProcess, active: str, client_id: str = BRIDGE_CLIENT_ID) -> None:
    """Start ``process`` and wait until it says it is the standby of ``active``."""
    process.ready_line = f"standby for {client_id}: instance {active} is active"
    process.start()


@contextmanager
def active_and_standby(tmp_path: Path, broker: BrokerHandle, db: str, *extra: str, config: Path | None = None
                       ) -> Iterator[tuple[ChildProcess, ChildProcess, ExitStack]]:
    """Instance a, active, and b, its standby, started; both stopped afterwards, with what else the
    stack is given."""
    a, b = (instance(tmp_path, broker, db, name, *extra, config=config) for name in ("a", "b"))
    with ExitStack() as stack:
        stack.callback(b.stop)
        stack.callback(a.stop)
        a.start()
        start_standby(b, "a")
        yield a, b, stack


def instance_state(probe: MqttProbe, client_id: str = BRIDGE_CLIENT_ID) -> dict[str, object]:
    """The last spc/bridge/state/<client id> the probe received."""
    return json.loads(probe.wait_for(instance_topic(client_id))[-1].payload)


@contextmanager
def stream(broker: BrokerHandle, readings: int, rate: float) -> Iterator[tuple[Gauges, Recorder]]:
    """Gauges publishing ``readings`` at ``rate`` (started) and a recorder of the events; closed afterwards."""
    with ExitStack() as stack:
        recorder = Recorder(broker)
        stack.callback(recorder.close)
        gauges = Gauges(broker, readings, rate)
        stack.callback(gauges.close)
        gauges.start()
        yield gauges, recorder


def test_standby_takes_over_within_10_s_of_kill_9(mosquitto: BrokerHandle, postgresql_database: str,
                                                  tmp_path: Path) -> None:
    db = postgresql_database
    processes = {name: instance(tmp_path, mosquitto, db, name) for name in ("a", "b")}
    with ExitStack() as stack:
        for process in processes.values():
            stack.callback(process.stop)
        processes["a"].start()
        start_standby(processes["b"], "a")
        probe = stack.enter_context(MqttProbe(mosquitto, user="dashboard"))
        probe.subscribe(INSTANCE_FILTER)  # spc/bridge/state and spc/bridge/state/<client id>
        state = instance_state(probe)
        assert (state["state"], state["instance"], state["epoch"]) == ("online", "a", 1), state
        time.sleep(1.5)
        assert CONNECTED not in processes["b"].output(), "the standby connected under the shared client id"
        took: list[float] = []
        active, standby = "a", "b"
        with stream(mosquitto, 6000, 600) as (gauges, recorder):
            for _ in range(5):
                time.sleep(0.7)
                mark = len(processes[standby].output())
                killed = time.monotonic()
                processes[active].kill()
                wait_until(lambda: CONNECTED in processes[standby].output()[mark:], TAKE_OVER_S * 2,
                           f"{standby} to take over")
                took.append(time.monotonic() - killed)
                start_standby(processes[active], standby)
                active, standby = standby, active
            gauges.wait(60)
            assert_nothing_lost_or_doubled(gauges, recorder, db)
        print(f"take-over after kill -9, s: {', '.join(f'{t:.2f}' for t in took)}")
        assert max(took) < TAKE_OVER_S, took
        assert f"instance {active} takes over {BRIDGE_CLIENT_ID} from instance {standby}" in processes[active].output()
        wait_until(lambda: instance_state(probe)["instance"] == active, 10, "the state to name the active instance")
        assert instance_state(probe)["epoch"] == 6
        assert probe.received(STATE_TOPIC)[-1].payload == b"online"


LEASE_TTL_S = 5.0  # --lease-ttl's default


def _stop_namespaced(process: ChildProcess) -> None:
    """Stop a process started under ``unshare --fork``: SIGTERM to the bridge inside it (unshare does not
    pass it on), then wait for both (bounded; unshare's --kill-child ends the bridge should it be killed)."""
    if process.proc is None:
        return
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    inner = children.read_text().split() if children.exists() else []
    try:
        if inner:
            os.kill(int(inner[0]), signal.SIGTERM)
            process.proc.wait(STOP_TIMEOUT)
    finally:
        process.stop()  # SIGTERM, then SIGKILL, to unshare: its --kill-child takes the bridge with it


def test_a_standby_on_another_host_takes_over_within_10_s_once_the_lease_expires(
        mosquitto: BrokerHandle, postgresql_database: str, tmp_path: Path) -> None:
    """The standby runs in a pid namespace of its own, so for the lease it is on another host: a's pid
    means nothing there. kill -9 of the active instance: the standby waits for the lease to expire
    (--lease-ttl 5), never taking it while it is held, then takes over within 10 s of the kill, and
    nothing is lost or doubled."""
    db = postgresql_database
    a = instance(tmp_path, mosquitto, db, "a")
    b = instance(tmp_path, mosquitto, db, "b")
    b.command = ["unshare", "--pid", "--fork", "--kill-child=SIGKILL", *b.command]
    with ExitStack() as stack:
        stack.callback(_stop_namespaced, b)
        stack.callback(a.stop)
        a.start()
        start_standby(b, "a")
        with stream(mosquitto, 3000, 500) as (gauges, recorder):
            time.sleep(1.5)
            killed = time.monotonic()
            a.kill()
            wait_until(lambda: CONNECTED in b.output(), TAKE_OVER_S * 2, "b to take over")
            took = time.monotonic() - killed
            gauges.wait(60)
            assert_nothing_lost_or_doubled(gauges, recorder, db)
        print(f"take-over from another host after kill -9: {took:.2f} s")
        assert LEASE_TTL_S - 1.5 < took < TAKE_OVER_S, "taken before the lease expired, or too late"


def _distinct_samples(probe: MqttProbe) -> list[int]:
    """The ids of characteristic 1's samples in the order their events first came."""
    return list(dict.fromkeys(json.loads(m.payload)["sample_id"] for m in probe.received("spc/1/sample")))


def test_rule_windows_continue_across_a_take_over(mosquitto: BrokerHandle, postgresql_database: str,
                                                  tmp_path: Path) -> None:
    """A nine-point run straddling a kill -9 of the active instance fires rule 2 at the standby that took
    over; two bores before the take-over and one after make one subgroup; the limits are those the
    killed instance had set, not a new baseline's."""
    config = write_file(tmp_path, RESTART_CONFIG)
    with active_and_standby(tmp_path, mosquitto, postgresql_database, config=config) as (a, b, stack):
        watcher = stack.enter_context(MqttProbe(mosquitto, user="dashboard"))
        gauge = stack.enter_context(MqttProbe(mosquitto))
        watcher.subscribe("spc/#")
        for value in [10.0, 11.0, 9.0, 10.5, 9.5] + [10.2] * 5:  # baseline, then 5 above the centre
            gauge.publish("plant/shaft", str(value))
        for value in (10.1, 9.9):
            gauge.publish("plant/bore", str(value))
        payloads(watcher, "spc/1/sample", 10)
        limits = payloads(watcher, "spc/1/limits", 2)[1]
        wait_until(lambda: query(postgresql_database, "select count(*) from readings")[0][0] == 12, 10,
                   "the bores stored")
        a.kill()
        wait_until(lambda: CONNECTED in b.output(), TAKE_OVER_S, "b to take over")
        for value in [10.2] * 4:
            gauge.publish("plant/shaft", str(value))
        gauge.publish("plant/bore", "10.3")
        violation = payloads(watcher, "spc/1/violation", 1)[0]
        wait_until(lambda: len(_distinct_samples(watcher)) == 14, 10, "14 samples")  # events come at least once
        assert (violation["rule_id"], violation["sample_id"]) == (2, _distinct_samples(watcher)[13])
        with MqttProbe(mosquitto, user="dashboard") as late:  # the retained limits: b's last word
            late.subscribe("spc/1/limits")
            assert payloads(late, "spc/1/limits", 1)[0] == limits
        bore = payloads(watcher, "spc/2/sample", 1)[0]
        assert bore["n"] == 3 and abs(bore["value"] - 10.1) < 1e-9


def test_a_paused_active_instance_commits_nothing_once_it_has_lost_its_lease(
        mosquitto: BrokerHandle, postgresql_database: str, tmp_path: Path) -> None:
    db = postgresql_database
    with active_and_standby(tmp_path, mosquitto, db, "--lease-ttl", "2") as (a, b, stack):
        probe = stack.enter_context(MqttProbe(mosquitto, user="dashboard"))
        probe.subscribe(INSTANCE_FILTER)
        with stream(mosquitto, 3000, 300) as (gauges, recorder):
            time.sleep(2.0)
            os.kill(a.pid, signal.SIGSTOP)
            try:
                wait_until(lambda: CONNECTED in b.output(), TAKE_OVER_S * 2, "b to take over from the paused a")
                time.sleep(2.0)  # b serves while a sleeps
            finally:
                os.kill(a.pid, signal.SIGCONT)
            wait_until(lambda: "standby for bridge:test: instance b is active" in a.output(), 15,
                       "a to become b's standby")
            gauges.wait(60)
            assert_nothing_lost_or_doubled(gauges, recorder, db)
        assert "lost the lease of bridge:test" in a.output()
        assert a.output().count(CONNECTED) == 1, "the woken instance connected again under the shared client id"
        assert b.output().count(CONNECTED) == 1, "b's session was taken away"
        assert instance_state(probe)["instance"] == "b"
        assert probe.received(STATE_TOPIC)[-1].payload == b"online"


def answers(probe: MqttProbe, user: str, command: str, body: dict[str, object]) -> list[dict[str, object]]:
    """Send ``command`` as ``user``, the probe's (subscribed to its responses), and return every answer to
    it: the first, and any other within a second (each request must have one only)."""
    topic = response_topic(user, command)
    before = len(probe.received(topic))
    probe.publish(request_topic(user, command), json.dumps(body))
    probe.wait_for(topic, before + 1, timeout=20)
    time.sleep(1.0)
    return [json.loads(m.payload) for m in probe.received(topic)[before:]]


def _serving(process: ChildProcess, name: str) -> set[int]:
    """The partitions the log of ``process`` says it serves now: taken, and not handed over or lost since."""
    serving: set[int] = set()
    events = rf"instance {name} (takes over|hands|lost the lease of) {BRIDGE_CLIENT_ID}:p(\d+)"
    for what, k in re.findall(events, process.output()):
        (serving.add if what == "takes over" else serving.discard)(int(k))
    return serving


def test_three_processes_on_six_partitions(mosquitto: BrokerHandle, postgresql_database: str, tmp_path: Path) -> None:
    db = postgresql_database
    names = ("p1", "p2", "p3")
    processes = {n: instance(tmp_path, mosquitto, db, n, "--partitions", "6", "--take", "2") for n in names}
    with ExitStack() as stack:
        for process in processes.values():
            stack.callback(process.stop)
        # started one after another: the first serves all six until the others come, then hands them over
        processes["p1"].start()
        wait_until(lambda: len(_serving(processes["p1"], "p1")) == 6, 20, "p1 to serve all six partitions")
        for name in names[1:]:
            processes[name].start()
        wait_until(lambda: all(len(_serving(processes[n], n)) == 2 for n in names), 30, "two partitions each")
        held = {n: _serving(processes[n], n) for n in names}
        assert set().union(*held.values()) == set(range(6)), held
        operator = stack.enter_context(MqttProbe(mosquitto, user="operator"))
        operator.subscribe(response_topic("operator", "#"))
        for cid in TOPICS:
            assert [a["status"] for a in answers(operator, "operator", "history", {"characteristic_id": cid})] == ["ok"]
        assert [a["status"] for a in answers(operator, "operator", "history", {"characteristic_id": 99})] == ["error"]
        deep = json.loads("[" * 50 + "]" * 50)
        big = "x" * 20_000
        for body, reason in (({"characteristic_id": deep}, "nests deeper"),
                             ({"characteristic_id": 1, "pad": big}, "bytes")):
            refused = answers(operator, "operator", "history", body)
            assert [a["status"] for a in refused] == ["error"] and reason in str(refused[0]["error"]), refused
        with stream(mosquitto, 4000, 500) as (gauges, recorder):
            time.sleep(2.0)
            victim = "p1"
            killed = time.monotonic()
            processes[victim].kill()
            survivors = [n for n in names if n != victim]

            def served_again() -> bool:
                return set().union(*(_serving(processes[n], n) for n in survivors)) == set(range(6))

            wait_until(served_again, TAKE_OVER_S * 2, f"the partitions of {victim} served again")
            took = time.monotonic() - killed
            gauges.wait(60)
            assert_nothing_lost_or_doubled(gauges, recorder, db, gauge_order=False)
        print(f"partitions {sorted(held[victim])} of {victim} taken over after {took:.2f} s")
        assert took < TAKE_OVER_S
        engineer = stack.enter_context(MqttProbe(mosquitto, user="engineer"))
        engineer.subscribe(response_topic("engineer", "#"))
        limits = {"characteristic_id": 2, "center": 10.0, "ucl": 13.0, "lcl": 7.0, "reason": "partitions"}
        assert [a["status"] for a in answers(engineer, "engineer", "set_limits", limits)] == ["ok"]
        with MqttProbe(mosquitto, user="gauge") as gauge:
            gauge.publish(TOPICS[1], json.dumps({"value": 1000.0, "seq": 10**6}))
        wait_until(lambda: bool(query(db, "select v.id from violations v join samples s on s.id = v.sample_id "
                                          "where v.characteristic_id = 1 and s.value = 1000")), 20, "the violation")
        violation = query(db, "select v.id from violations v join samples s on s.id = v.sample_id "
                              "where v.characteristic_id = 1 and s.value = 1000")[0][0]
        ack = {"violation_id": violation, "reason_code": "measurement_error", "reason": "partitions"}
        assert [a["status"] for a in answers(operator, "operator", "ack", ack)] == ["ok"]


def test_a_standby_is_healthy_and_its_metrics_say_it_is_not_active(mosquitto: BrokerHandle, postgresql_database: str,
                                                                   tmp_path: Path) -> None:
    ports = {"a": free_port(), "b": free_port()}
    a, b = (instance(tmp_path, mosquitto, postgresql_database, name, "--metrics-port", str(ports[name]))
            for name in ("a", "b"))
    with ExitStack() as stack:
        stack.callback(b.stop)
        stack.callback(a.stop)
        a.start()
        start_standby(b, "a")
        wait_until(lambda: health(ports["a"])[0] == 200, 20, "the active instance healthy")
        assert scrape(ports["a"])["spc_bridge_active"] == 1 and "spc_bridge_readings_stored_total" in scrape(ports["a"])
        assert health(ports["b"]) == (200, {"status": "ok"})
        assert scrape(ports["b"]) == {"spc_bridge_active": 0}
        a.stop()  # a clean stop releases the lease: the standby takes over at once
        wait_until(lambda: scrape(ports["b"])["spc_bridge_active"] == 1, TAKE_OVER_S, "b to be active")
        wait_until(lambda: health(ports["b"])[0] == 200, 20, "b healthy")


def test_a_partition_beyond_the_count_is_refused_at_start(tmp_path: Path, postgresql_database: str) -> None:
    config = tmp_path / "spc.toml"
    config.write_text('[[characteristic]]\nid = 1\nname = "bore"\ntopic = "line/bore"\nchart = "imr"\npartition = 5\n')
    refused = subprocess.run([sys.executable, "-m", "bridge", "run", "--broker", "mqtt://127.0.0.1:9", "--db",
                              postgresql_database, "--config", str(config), "--partitions", "2"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "characteristic(s) [1] name a partition beyond the 2 of --partitions (0..1)" in refused.stderr


def test_an_instance_with_another_partition_count_is_refused(mosquitto: BrokerHandle, postgresql_database: str,
                                                             tmp_path: Path) -> None:
    """While an instance serves the bridge with --partitions 2, one started with 3 (it would run some of
    the same characteristics) or with none stops at once with the reason, and serves nothing."""
    db = postgresql_database
    served = instance(tmp_path, mosquitto, db, "two", "--partitions", "2")
    served.ready_line = f"takes over {BRIDGE_CLIENT_ID}:p1/2"
    served.start()
    try:
        for count in ("3", "1"):
            other = instance(tmp_path, mosquitto, db, f"other-{count}", "--partitions", count)
            refused = subprocess.run([*other.command, *other.args], capture_output=True, text=True, timeout=60,
                                     check=False)
            assert refused.returncode == 2, refused.stderr
            assert re.search(rf"instance two serves {BRIDGE_CLIENT_ID}:p[01]/2 of this bridge with --partitions 2, "
                             rf"and this one has --partitions {count}", refused.stderr), refused.stderr
            assert "takes over" not in refused.stderr
        assert served.proc is not None and served.proc.poll() is None
    finally:
        served.stop()


def test_a_link_whose_session_was_taken_over_stops_cleanly(mosquitto: BrokerHandle) -> None:
    """An instance stepping down after another took its session: the broker has closed its connection, which
    its link has not read yet but has written into once, and its ``offline`` cannot be published. The link stops all the same (paho
    raised "Message publish failed: The connection was lost", and the woken instance died instead of
    becoming a standby: seen once under CI's load)."""
    link = MqttLink(parse_broker_url(mosquitto.url("bridge")), BRIDGE_CLIENT_ID, SimpleQueue(), lambda _mid: None)
    link.start([])
    deadline = time.monotonic() + 10
    while not link.connected.is_set() and time.monotonic() < deadline:
        link.poll(0.05)
    assert link.connected.is_set()
    with MqttProbe(mosquitto, user="bridge", client_id=BRIDGE_CLIENT_ID):  # the broker closes link's connection
        time.sleep(0.2)
        link.publish("spc/bridge/test", "sent into the closed connection: the broker answers with a reset", False)
        time.sleep(0.2)
        link.stop(2.0)
    assert not link.connected.is_set()
