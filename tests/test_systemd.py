"""The systemd units of deploy/systemd: `systemd-analyze verify` accepts them, `systemd-analyze security` rates them
safe, each runs as a user of its own with the hardening README promises, and its ExecStart with its example
environment file makes valid settings of the command it runs."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import build_parser
from bridge.config import settings_from_args
from bridge.gateway.settings import gateway_settings_from_args
from tests.processes import REPO

UNITS = REPO / "deploy" / "systemd"
INSTALLED_COMMAND = "/opt/spc-bridge/bin/spc-bridge"
# `systemd-analyze security` exposure, 0 (safe) to 100: "OK" up to 20 (the units score 14).
MAX_EXPOSURE = 20
HARDENING = {
    "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictSUIDSGID": "yes", "Restart": "on-failure",
}
# Unit, its user, the environment file it reads and the example of that file in deploy/systemd.
SERVICES = (
    ("spc-bridge.service", "spc-bridge", "/etc/spc-bridge/bridge.env", "bridge.env.example"),
    ("spc-bridge-gateway.service", "spc-bridge-gateway", "/etc/spc-bridge/gateway.env", "gateway.env.example"),
)
SYSTEMD_TIMEOUT = 60.0


def settings(path: Path) -> dict[str, list[str]]:
    """`Key=Value` lines of a unit or environment file (every value of a repeated key), comments skipped."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this machine's `spc-bridge` (verify requires the program to exist)."""
    command = shutil.which("spc-bridge")
    assert command is not None, "spc-bridge is not installed (pip install -e '.[test]')"
    for unit, *_ in SERVICES:
        text = (UNITS / unit).read_text()
        assert f"ExecStart={INSTALLED_COMMAND} " in text, f"{unit}: ExecStart no longer runs {INSTALLED_COMMAND}"
        (tmp_path / unit).write_text(text.replace(f"ExecStart={INSTALLED_COMMAND} ", f"ExecStart={command} "))
    return tmp_path


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze ARGS`, bounded (it needs no running systemd)."""
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=SYSTEMD_TIMEOUT)


def test_systemd_analyze_verify_accepts_both_units_without_a_warning(units: Path) -> None:
    done = systemd_analyze("verify", *(str(units / unit) for unit, *_ in SERVICES))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("unit", [service[0] for service in SERVICES])
def test_systemd_analyze_security_rates_the_unit_safe(units: Path, unit: str) -> None:
    done = systemd_analyze("security", "--offline=yes", f"--threshold={MAX_EXPOSURE}", str(units / unit))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


@pytest.mark.parametrize(("unit", "user", "environment_file", "example"), SERVICES)
def test_each_unit_runs_as_its_own_user_hardened_with_its_secrets_in_an_environment_file(
        unit: str, user: str, environment_file: str, example: str) -> None:
    found = settings(UNITS / unit)
    assert found["User"] == [user] and found["Group"] == [user]
    assert {key: found.get(key, [None])[-1] for key in HARDENING} == HARDENING
    assert found["EnvironmentFile"] == [environment_file] and "Environment" not in found  # secrets: not in the unit
    assert (UNITS / example).is_file()


@pytest.mark.parametrize(("unit", "user", "environment_file", "example"), SERVICES)
def test_exec_start_with_the_example_environment_makes_valid_settings(
        unit: str, user: str, environment_file: str, example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("SPC_BRIDGE_")]:
        monkeypatch.delenv(name)
    variables = settings(UNITS / example)
    assert variables and all(re.fullmatch(r"SPC_BRIDGE_[A-Z_]+", name) for name in variables)
    for name, values in variables.items():
        monkeypatch.setenv(name, values[-1])
    argv = shlex.split(settings(UNITS / unit)["ExecStart"][0])[1:]
    parser = build_parser()  # its defaults come from the environment, as in the service
    args = parser.parse_args(argv)
    helped = subprocess.run([sys.executable, "-m", "bridge", args.command, "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=SYSTEMD_TIMEOUT)
    named = re.findall(r"^#?(SPC_BRIDGE_[A-Z_]+)=", (UNITS / example).read_text(), flags=re.MULTILINE)
    for name in named:  # each variable, commented out or not, is one the command reads (its --help names them all)
        assert re.search(rf"\b{name}\b", helped.stdout), f"{example}: `spc-bridge {args.command}` reads no {name}"
    checked = settings_from_args(args) if args.command == "run" else gateway_settings_from_args(args)
    assert checked.broker.username in ("bridge", "gateway")
