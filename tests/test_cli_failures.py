"""Every expected failure of a command, run for real: one or two lines that say what failed and what to do, exit
code 2, and the traceback only with -v."""

import os
import select
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.brokers import HOST, BrokerHandle, EmbeddedBrokerThread, free_port
from tests.processes import REPO, ChildProcess

RUN_TIMEOUT = 60
CONFIG = '[[characteristic]]\nid = 1\nname = "Bore"\ntopic = "line/bore"\nchart = "imr"\n'


def spc_bridge(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m bridge <args>`` to its end (bounded), standard input ``stdin``."""
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=REPO, input=stdin, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def assert_failure(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2 and at most two lines on standard error, no traceback, with each of ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert 1 <= len(lines) <= 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith("spc-bridge: "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def assert_verbose_failure(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """With -v: the traceback, then the same one line."""
    assert result.returncode == 2 and "Traceback (most recent call last)" in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("spc-bridge: ") and all(word in last for word in words), result.stderr


def run_args(tmp_path: Path, db_url: str) -> list[str]:
    """``run`` on ``db_url``, its broker never reached (the database is opened first)."""
    config = tmp_path / "chars.toml"
    config.write_text(CONFIG)
    return ["run", "--broker", f"mqtt://bridge:x@{HOST}:{free_port()}", "--db", db_url, "--config", str(config)]


@pytest.mark.parametrize("options", [[], ["-v"]])
def test_tail_with_a_wrong_password(broker: BrokerHandle, options: list[str]) -> None:
    """A refused login ends tail with one line naming the user and the password (-v: and the traceback)."""
    url = broker.url("dashboard").replace("dashboard-password", "wrong-password")
    result = spc_bridge(*options, "tail", "--broker", url)
    words = ("refused the login of user dashboard", "check the password")
    (assert_verbose_failure if options else assert_failure)(result, *words)
    assert "wrong-password" not in result.stderr


def test_tail_with_a_certificate_it_cannot_verify(embedded_broker: EmbeddedBrokerThread) -> None:
    """mqtts:// without the CA that signed the broker's certificate: one line that names --ca-file."""
    result = spc_bridge("tail", "--broker", embedded_broker.url("dashboard", "mqtts"))
    assert_failure(result, "certificate", "cannot be verified", "--ca-file")


def test_tail_waits_for_a_broker_that_is_not_running(tmp_path: Path) -> None:
    """Nothing listens: one line per attempt, with the bridge's backoff (1 s, 2 s, ...); Ctrl-C ends it."""
    port = free_port()
    tail = ChildProcess(["tail", "--broker", f"mqtt://{HOST}:{port}"], tmp_path / "tail.log", "next attempt in 2 s")
    tail.start()
    try:
        assert tail.stop(signal.SIGINT) == 0
        lines = tail.output().strip().splitlines()
        assert lines[:2] == [f"tail: nothing listens on {HOST}:{port}: start the broker, or check the port; "
                             f"next attempt in {s} s (Ctrl-C stops it)" for s in (1, 2)], tail.output()
        assert "Traceback" not in tail.output()
    finally:
        tail.stop()


@pytest.mark.parametrize("kind", ["missing folder", "unwritable folder", "not a database", "no such database",
                                  "no such role", "malformed", "unknown kind"])
def test_run_with_a_database_that_cannot_work(tmp_path: Path, kind: str) -> None:
    """A database that waiting cannot fix stops ``run`` at once with one line (an unreachable server is waited
    for instead: tests/test_isolation.py)."""
    (tmp_path / "junk.db").write_text("not SQLite\n" * 100)
    url, words = {
        "missing folder": (f"sqlite:///{tmp_path / 'nope' / 'spc.db'}", ("the folder", "does not exist")),
        "unwritable folder": ("sqlite:////proc/spc.db", ("cannot write /proc/spc.db", "-wal")),
        "not a database": (f"sqlite:///{tmp_path / 'junk.db'}", ("file is not a database", "--db")),
        "no such database": ("postgresql://postgres:pg-secret@127.0.0.1:5432/spc_no_such_db",
                             ('database "spc_no_such_db" does not exist', "check the user")),
        "no such role": ("postgresql://nobody_here:pg-secret@127.0.0.1:5432/test", ('role "nobody_here"',)),
        "malformed": ("postgresql://postgres:pg-secret@127.0.0.1:abc/test", ("not a database URL", "e.g. sqlite:///")),
        "unknown kind": ("nosuchdb://host/spc", ("unknown kind of database",)),
    }[kind]
    result = spc_bridge(*run_args(tmp_path, url))
    assert_failure(result, *words)
    assert "pg-secret" not in result.stderr


def test_run_with_a_database_in_a_missing_folder_verbose(tmp_path: Path) -> None:
    """-v adds the traceback of SQLAlchemy's error to the same line."""
    result = spc_bridge("-v", *run_args(tmp_path, f"sqlite:///{tmp_path / 'nope' / 'spc.db'}"))
    assert_verbose_failure(result, "does not exist")
    assert "sqlite3.OperationalError" in result.stderr


def ctrl_d_at_the_prompt(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bridge <args>`` on a terminal (a pseudo-terminal) and type Ctrl-D at its first prompt."""
    controller, terminal = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "bridge", *args], cwd=REPO, stdin=terminal, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # no controlling terminal: getpass uses stdin
    os.close(terminal)
    try:
        assert proc.stderr is not None
        prompt = b""
        deadline = time.monotonic() + RUN_TIMEOUT
        while b": " not in prompt and time.monotonic() < deadline:  # the prompt turns echo off, flushing input
            if select.select([proc.stderr], [], [], 0.5)[0]:
                prompt += os.read(proc.stderr.fileno(), 1024)
        os.write(controller, b"\x04")
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        proc.kill()
        proc.wait(RUN_TIMEOUT)
        os.close(controller)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(), (prompt + stderr).decode())


def test_end_of_input_at_the_password_prompt(tmp_path: Path) -> None:
    """Ctrl-D at ``user add``'s prompt on a terminal, or nothing on --password-stdin: one line, no user added."""
    users = tmp_path / "users"
    result = ctrl_d_at_the_prompt("user", "add", "alice", "--role", "dashboard", "--dir", str(users))
    assert_failure(result, "password for alice:", "no password given", "--password-stdin")
    assert_failure(spc_bridge("user", "add", "alice", "--role", "dashboard", "--dir", str(users), "--password-stdin"),
                   "no password on standard input")
    assert not (users / "users.toml").exists()


@pytest.mark.parametrize("command", ["run --config", "tail --ca-file", "user list --dir", "broker --users",
                                     "broker --tls-cert"])
def test_a_missing_file(tmp_path: Path, command: str) -> None:
    """A file or folder that is not there is named in one line."""
    missing = tmp_path / "missing"
    args = {
        "run --config": ["run", "--config", str(missing)],
        "tail --ca-file": ["tail", "--broker", f"mqtts://{HOST}:{free_port()}", "--ca-file", str(missing)],
        "user list --dir": ["user", "list", "--dir", str(missing)],
        "broker --users": ["broker", "--users", str(missing), "--port", "0", "--ws-port", "0"],
        "broker --tls-cert": ["broker", "--allow-anonymous", "--port", "0", "--ws-port", "0",
                              "--tls-cert", str(missing), "--tls-key", str(missing)],
    }[command]
    assert_failure(spc_bridge(*args), str(missing))


@pytest.mark.parametrize("command", ["broker", "gateway"])
def test_a_port_in_use(command: str) -> None:
    """A port something else listens on: one line naming it (the demo: tests/test_demo.py)."""
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = {"broker": ["broker", "--allow-anonymous", "--port", str(port), "--ws-port", str(free_port())],
                "gateway": ["gateway", "--port", str(port), "--broker", f"mqtt://{HOST}:{free_port()}"]}[command]
        assert_failure(spc_bridge(*args), str(port), "already in use")


def test_version_and_help() -> None:
    """--version is the package's; --help describes each command for users and points at README."""
    result = spc_bridge("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"spc-bridge {version('spc-bridge')}"
    text = spc_bridge("--help").stdout
    assert "README.md" in text and "``" not in text and "wires the parts" not in text
    for command in ("run", "broker", "user", "demo", "tail", "gateway", "dashboard", "bench", "bench-engine"):
        assert f"\n    {command} " in text, text
        described = spc_bridge(*command.split(), "--help").stdout
        assert "-v, --verbose" in described and "--log-format" in described, described
        assert described.split("\n\n")[1][0].isupper(), described  # a sentence under the usage


def test_log_format_from_an_unknown_environment_value() -> None:
    """SPC_BRIDGE_LOG_FORMAT is checked like the option."""
    result = subprocess.run([sys.executable, "-m", "bridge", "tail"], cwd=REPO, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT, env=dict(os.environ, SPC_BRIDGE_LOG_FORMAT="xml"))
    assert result.returncode == 2 and "SPC_BRIDGE_LOG_FORMAT='xml'" in result.stderr

