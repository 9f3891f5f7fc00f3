"""`spc-bridge user`: the users directory both brokers read, its checks, the shipped example, and a password
that is never shown; `spc-bridge broker` refuses to run open to the network."""

from __future__ import annotations

import base64
import hashlib
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pwdlib.hashers.argon2 import Argon2Hasher

from broker.users import User, UserDirectory, UsersError, mosquitto_acl
from tests.brokers import HOST, ConnectionRefused, EmbeddedBrokerProcess, MqttProbe, free_port, start_mosquitto
from tests.credentials import Certificates
from tests.processes import REPO

SECRET = "correct horse battery staple"


def spc_bridge(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `python -m bridge ARGS` to completion (bounded)."""
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=REPO, input=stdin, capture_output=True,
                          text=True, timeout=60)


def mosquitto_verifies(stored: str, password: str) -> bool:
    """What Mosquitto 2.0 does with a `$7$<iterations>$<salt>$<hash>` entry (PBKDF2-SHA512)."""
    _, kind, iterations, salt, key = stored.split("$")
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations), 64)
    return kind == "7" and base64.b64encode(derived).decode() == key


def test_add_list_remove_through_the_command_line_never_shows_the_password(tmp_path: Path) -> None:
    directory = tmp_path / "users"
    added = spc_bridge("user", "add", "gauge7", "--role", "gauge", "--topic", "plant1/line1/gauge7/#",
                       "--topic", "plant1/line1/gauge8/#", "--password-stdin", "--dir", str(directory),
                       stdin=SECRET + "\n")
    assert added.returncode == 0, added.stderr
    assert spc_bridge("user", "add", "ops", "--role", "operator", "--password-stdin", "--dir", str(directory),
                      stdin=SECRET + "\n").returncode == 0
    listed = spc_bridge("user", "list", "--dir", str(directory))
    assert listed.stdout.splitlines() == [
        "NAME    ROLE      PASSWORD  TOPICS",
        "gauge7  gauge     set       plant1/line1/gauge7/# plant1/line1/gauge8/#",
        "ops     operator  set",
    ]
    removed = spc_bridge("user", "remove", "gauge7", "--dir", str(directory))
    assert removed.returncode == 0
    assert [u.name for u in UserDirectory(directory).load()] == ["ops"]
    shown = "".join(r.stdout + r.stderr for r in (added, listed, removed))
    assert SECRET not in shown and "$7$" not in shown and "argon2" not in shown


def test_both_password_files_verify_the_password_and_only_it(tmp_path: Path) -> None:
    directory = UserDirectory(tmp_path)
    directory.add(User("dash", "dashboard"), SECRET)
    directory.add(User("admin", "admin"), SECRET)
    mosquitto, amqtt = (dict(line.split(":", 1) for line in path.read_text().splitlines() if not line.startswith("#"))
                        for path in (directory.mosquitto_passwords, directory.amqtt_passwords))
    assert mosquitto_verifies(mosquitto["dash"], SECRET) and not mosquitto_verifies(mosquitto["dash"], SECRET + "!")
    assert Argon2Hasher().verify(SECRET, amqtt["dash"]) and not Argon2Hasher().verify(SECRET + "!", amqtt["dash"])
    assert mosquitto["dash"] != mosquitto["admin"] and amqtt["dash"] != amqtt["admin"]  # salted
    assert SECRET not in directory.mosquitto_passwords.read_text() + directory.amqtt_passwords.read_text()
    assert oct(directory.mosquitto_passwords.stat().st_mode & 0o777) == "0o640"


def test_replacing_a_user_changes_its_role_rights_and_password(tmp_path: Path) -> None:
    directory = UserDirectory(tmp_path)
    assert directory.add(User("pat", "dashboard"), SECRET) is False
    assert directory.add(User("pat", "operator"), "another password") is True
    assert directory.load() == [User("pat", "operator")]
    assert "topic write spc/bridge/request/pat/ack\n" in directory.mosquitto_acl.read_text()
    stored = directory.mosquitto_passwords.read_text().splitlines()[-1].split(":", 1)[1]
    assert mosquitto_verifies(stored, "another password")


@pytest.mark.parametrize(("name", "role", "topics", "words"), [
    ("a/b", "admin", (), "user name"),
    ("+", "admin", (), "user name"),
    ("has space", "admin", (), "user name"),
    ("x" * 65, "admin", (), "user name"),
    ("boss", "root", (), "unknown role"),
    ("g1", "gauge", (), "at least one --topic"),
    ("d1", "dashboard", ("a/b",), "takes no --topic"),
    ("g1", "gauge", ("spc/1/violation",), "only the bridge publishes"),
    ("g1", "gauge", ("#",), "only the bridge publishes"),
    ("g1", "gauge", ("+/1/sample",), "only the bridge publishes"),
    ("g1", "gauge", ("$SYS/x",), "reserve"),
    ("g1", "gauge", ("a/#/b",), "not a valid topic filter"),
    ("g1", "gauge", ("a/b+",), "not a valid topic filter"),
    ("g1", "gauge", ("a b",), "spaces"),
])
def test_a_user_that_cannot_be_expressed_safely_is_refused(name: str, role: str, topics: tuple[str, ...],
                                                           words: str) -> None:
    with pytest.raises(UsersError, match=words):
        User(name, role, topics)


@pytest.mark.parametrize("password", ["short", "two\nlines"])
def test_a_weak_or_malformed_password_is_refused(tmp_path: Path, password: str) -> None:
    with pytest.raises(UsersError, match="password"):
        UserDirectory(tmp_path).add(User("admin", "admin"), password)
    assert not (tmp_path / "users.toml").exists()


def test_users_added_at_the_same_time_are_all_kept(tmp_path: Path) -> None:
    directory = UserDirectory(tmp_path)
    adders = [threading.Thread(target=directory.add, args=(User(f"gauge{i}", "gauge", (f"line/{i}/#",)), SECRET))
              for i in range(8)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join(30)
    assert sorted(user.name for user in directory.load()) == [f"gauge{i}" for i in range(8)]
    assert all(has_password for _, has_password in directory.with_passwords())


def test_the_shipped_example_is_what_the_command_writes_and_lets_nobody_in(
    tmp_path: Path, certificates: Certificates
) -> None:
    example = UserDirectory(REPO / "users.example")
    users = example.load()
    assert example.mosquitto_acl.read_text() == mosquitto_acl(users)
    written = UserDirectory(tmp_path / "written")
    for user in users:
        written.add(user, SECRET)
    assert example.users_file.read_text() == written.users_file.read_text()
    assert [has_password for _, has_password in example.with_passwords()] == [False] * len(users)
    mosquitto = start_mosquitto(tmp_path, example.path, certificates)
    try:
        for name in [None, *(user.name for user in users)]:
            with pytest.raises(ConnectionRefused):
                MqttProbe(mosquitto, user=name, password=SECRET)
    finally:
        mosquitto.stop()


@pytest.mark.parametrize(("args", "words"), [
    ([], "give --users DIR"),
    (["--allow-anonymous", "--host", "0.0.0.0"], "anonymous access is for localhost only"),
    (["--users", "no-such-dir"], "no such file"),
])
def test_the_broker_will_not_run_open_or_without_its_users(args: list[str], words: str) -> None:
    ran = spc_bridge("broker", "--port", str(free_port()), "--ws-port", str(free_port()), *args)
    assert ran.returncode == 2 and words in ran.stderr and ran.stderr.count("\n") == 1
    assert ran.stdout == ""


def test_the_broker_command_serves_its_users_over_tls(tmp_path: Path, role_users: Path,
                                                      certificates: Certificates) -> None:
    broker = EmbeddedBrokerProcess(tmp_path, role_users, certificates)
    broker.start()
    try:
        assert f"wss://{HOST}:{broker.wss_port}/mqtt; users of {role_users}" in broker.output()
        with MqttProbe(broker, "websockets", tls=True, user="dashboard") as dashboard:
            dashboard.subscribe("spc/+/sample")
        for transport in ("tcp", "websockets"):
            with pytest.raises(ConnectionRefused):
                MqttProbe(broker, transport, user=None)
        assert broker.stop(signal.SIGINT) == 0
    finally:
        broker.stop()
