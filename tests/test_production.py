"""README's production set-up works as written: its commands, taken from README itself, run as root (system paths
moved under a temporary folder), then a real Mosquitto that drops to user `mosquitto` serves a gauge, the bridge and
a dashboard on each of its four listeners; and `spc-bridge user` gives the broker's files to the broker's group."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

from broker.users import BROKER_GROUP
from tests.brokers import SCHEMES, MosquittoProcess, MqttProbe, Scheme, free_port
from tests.checkout import checkout
from tests.credentials import Certificates, password
from tests.processes import BRIDGE_CLIENT_ID, REPO, bridge_process

README = REPO / "README.md"
MARKER = "<!-- tests/test_production.py runs the next block"
SETUP_TIMEOUT = 300.0
SAMPLE_TIMEOUT = 15.0
# Every absolute path under these system folders is moved under the test's root; nothing else is rewritten
# except SUBSTITUTIONS.
SYSTEM_PATH = re.compile(r"(?<![\w.~/-])/(etc|opt|usr/local|var)/")
# What the test does differently from a plant, each required to be in the block: the virtual environment sees
# the packages installed here (nothing is downloaded), and the certificate names the loopback address.
SUBSTITUTIONS = (
    ("python3 -m venv ", f"{sys.executable} -m venv --system-site-packages "),
    ("/bin/pip install .", "/bin/pip install --no-deps ."),
    ("BROKER_SAN=DNS:mqtt.plant1.example", "BROKER_SAN=IP:127.0.0.1,DNS:localhost"),
)
# The listeners of mosquitto.conf, moved to free ports on loopback (Mosquitto 2.0 binds a WebSocket listener to
# an interface name only).
LISTENERS = (("1883", "127.0.0.1"), ("9001", "lo"), ("8883", "127.0.0.1"), ("9443", "lo"))
# The users README's block adds, and the reading its gauge sends (characteristic 2 of characteristics.example.toml).
GAUGE, DASHBOARD = "filler2", "gateway"
GAUGE_TOPIC = "plant1/line2/filler2/weight"
# The folders of a Debian system with the mosquitto package, which README's block expects to exist.
SYSTEM_FOLDERS = ("etc/mosquitto", "opt", "usr/local/bin", "usr/local/lib", "var/lib")


def readme_block() -> str:
    """The fenced sh block right after MARKER in README."""
    text = README.read_text(encoding="utf-8")
    found = re.search(re.escape(MARKER) + r"[^\n]*\n```sh\n(.*?)\n```", text, flags=re.DOTALL)
    assert found is not None, f"README.md: no ```sh block right after {MARKER!r}"
    return found.group(1)


def relocate(text: str, root: Path) -> str:
    """`text` with every absolute path under /etc, /opt, /usr/local and /var moved under `root`."""
    return SYSTEM_PATH.sub(lambda match: f"{root}/{match.group(1)}/", text)


def for_test(block: str, root: Path) -> str:
    """README's block as the test runs it: relocated under `root`, with SUBSTITUTIONS."""
    script = relocate(block, root)
    for readme, test in SUBSTITUTIONS:
        assert readme in script, f"README's production block no longer contains {readme!r}: update the test"
        script = script.replace(readme, test)
    return script


def run_as_typed(script: str, cwd: Path, env: dict[str, str]) -> str:
    """Run `script` with bash -euo pipefail on a terminal, typing each user's test password at the prompts of
    `spc-bridge user add` as an administrator would; its output (raises if it fails or outlives SETUP_TIMEOUT)."""
    child = pexpect.spawn("bash", ["-euo", "pipefail", "-c", script], cwd=str(cwd), env=env, encoding="utf-8",
                          codec_errors="replace", timeout=SETUP_TIMEOUT)
    output, user = [], ""
    try:
        while True:
            index = child.expect([r"password for (\S+): ", r"the same again: ", pexpect.EOF])
            output.append(child.before)
            if index == 2:
                child.wait()  # the terminal closes a moment before bash exits
                break
            if index == 0:
                user = child.match.group(1)
            child.sendline(password(user))
    finally:
        child.close(force=True)  # the child by its PID: SIGHUP, SIGINT, then SIGKILL if it is still there
    text = "".join(output)
    assert child.exitstatus == 0, f"README's production commands failed ({child.exitstatus}):\n{text}"
    return text


@dataclass
class Production:
    """What README's production block set up, and the Mosquitto running its configuration."""

    root: Path
    checkout: Path
    mosquitto: MosquittoProcess


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    """README's production block run as root, then Mosquitto started from the configuration it installed."""
    assert os.geteuid() == 0, "the production set-up is run as root, as README says (bash .ci/run does)"
    # Mosquitto, once it has dropped to user mosquitto, must reach the files: pytest's folders are 0700.
    root = Path(tempfile.mkdtemp(prefix="spc-production-"))
    try:
        root.chmod(0o755)
        for folder in SYSTEM_FOLDERS:
            (root / folder).mkdir(mode=0o755, parents=True)
        work = tmp_path_factory.mktemp("production")
        repo = checkout(work / "checkout")
        env = dict(os.environ, PATH=f"{root}/usr/local/bin:{os.environ['PATH']}")
        run_as_typed(for_test(readme_block(), root), repo, env)

        conf_path = root / "etc/mosquitto/mosquitto.conf"
        conf = relocate(conf_path.read_text(), root)
        ports = tuple(free_port() for _ in LISTENERS)
        for (default, bind), port in zip(LISTENERS, ports):
            conf, count = re.subn(rf"^listener {default}$", f"listener {port} {bind}", conf, flags=re.MULTILINE)
            assert count == 1, f"mosquitto.conf: expected one `listener {default}` line"
        conf_path.write_text(conf)
        certs_dir = root / "etc/mosquitto/certs"
        server = (certs_dir / "spc-bridge.crt", certs_dir / "spc-bridge.key")
        # README makes no client certificate; the probes only need the CA.
        certs = Certificates(certs_dir / "ca.crt", *server, *server)
        mosquitto = MosquittoProcess(work, (ports[0], ports[1], ports[2], ports[3]), root / "etc/mosquitto/spc-bridge",
                                     certs)
        mosquitto.conf_path = conf_path  # the configuration README installed, not the test suite's own
        mosquitto.start()
        try:
            yield Production(root, repo, mosquitto)
        finally:
            mosquitto.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_mosquitto_runs_as_user_mosquitto_with_files_of_group_mosquitto(production: Production) -> None:
    assert production.mosquitto.pid is not None
    status = Path(f"/proc/{production.mosquitto.pid}/status").read_text()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, flags=re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert uid == pwd.getpwnam("mosquitto").pw_uid, production.mosquitto.log_tail()
    users = production.root / "etc/mosquitto/spc-bridge"
    for name, mode in (("mosquitto.passwd", 0o640), ("amqtt.passwd", 0o640), ("mosquitto.acl", 0o644)):
        info = (users / name).stat()
        assert (info.st_uid, grp.getgrgid(info.st_gid).gr_name, oct(info.st_mode & 0o777)) == (0, BROKER_GROUP,
                                                                                                oct(mode)), name
    plugin = production.root / "usr/local/lib/spc-bridge/clientid_owner.so"
    assert plugin.is_file() and f"plugin {plugin}" in production.mosquitto.conf_path.read_text()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_gauge_bridge_and_dashboard_meet_on_every_listener(production: Production, scheme: Scheme,
                                                           tmp_path: Path) -> None:
    broker = production.mosquitto
    tls = scheme in ("mqtts", "wss")
    transport = "websockets" if scheme in ("ws", "wss") else "tcp"
    value = 500.0 + SCHEMES.index(scheme) / 10
    bridge = bridge_process(tmp_path, broker.url("bridge", scheme), f"sqlite:///{tmp_path}/spc.db",
                            production.checkout / "characteristics.example.toml", BRIDGE_CLIENT_ID,
                            *(["--ca-file", str(broker.certs.ca)] if tls else []))
    with MqttProbe(broker, transport, tls=tls, user=DASHBOARD) as dashboard:
        dashboard.subscribe("spc/2/sample")
        bridge.start()
        try:
            with MqttProbe(broker, transport, tls=tls, user=GAUGE) as gauge:
                # Until the bridge's subscription is in place a reading may go unheard: send again, bounded.
                deadline = time.monotonic() + SAMPLE_TIMEOUT
                while not any(json.loads(m.payload)["value"] == value for m in dashboard.received("spc/2/sample")):
                    assert time.monotonic() < deadline, f"no sample of {value} over {scheme}:\n{bridge.output()}"
                    gauge.publish(GAUGE_TOPIC, json.dumps({"value": value}))
                    dashboard.wait_for("spc/2/sample", len(dashboard.received("spc/2/sample")) + 1, timeout=0.5)
        finally:
            assert bridge.stop() == 0, bridge.output()


def test_user_add_gives_the_files_to_the_group_given(tmp_path: Path) -> None:
    directory = tmp_path / "users"
    for group in (BROKER_GROUP, "nogroup"):  # the second replaces files that exist, and changes their group
        done = subprocess.run([sys.executable, "-m", "bridge", "user", "add", "bridge", "--role", "bridge",
                               "--password-stdin", "--group", group, "--dir", str(directory)], cwd=REPO,
                              input=password("bridge") + "\n", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        for name in ("users.toml", "mosquitto.passwd", "mosquitto.acl", "amqtt.passwd"):
            info = (directory / name).stat()
            assert grp.getgrgid(info.st_gid).gr_name == group and info.st_mode & 0o040, name
    assert oct(directory.stat().st_mode & 0o777) == "0o755"


def test_an_unknown_group_is_refused_in_one_line_before_the_password(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bridge", "user", "add", "bridge", "--role", "bridge",
                           "--group", "no-such-group", "--dir", str(tmp_path / "users")], cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"spc-bridge: --group no-such-group: no such group: give the group the broker runs as (e.g. {BROKER_GROUP})"]
    assert not (tmp_path / "users").exists()
