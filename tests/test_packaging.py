"""A plain `pip install .` ships what the commands need: installed as a wheel into a fresh virtual environment, with
the source removed, the commands run from another folder; and every library the code imports is declared."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bridge.dashboard.site import site
from tests.brokers import HOST, free_port, wait_for_ports
from tests.checkout import checkout, installed_venv
from tests.processes import REPO, ChildProcess

PACKAGES = ("bridge", "broker")
COMMAND_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a virtual environment with spc-bridge installed from a copy of the repository, which is
    then deleted: nothing may still come from a source tree."""
    work = tmp_path_factory.mktemp("packaging")
    source = checkout(work / "source")
    venv_bin = installed_venv(source, work / "venv")
    shutil.rmtree(source)
    return venv_bin


@pytest.fixture
def elsewhere(tmp_path: Path) -> dict[str, str]:
    """The environment of a user outside the repository: home (and cache) in `tmp_path`, no PYTHONPATH."""
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "XDG_CACHE_HOME")}
    return dict(env, HOME=str(tmp_path), PYTHONUNBUFFERED="1")


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `command` to completion (bounded)."""
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def test_the_installed_package_is_the_wheel_not_the_repository(venv_bin: Path, tmp_path: Path,
                                                                elsewhere: dict[str, str]) -> None:
    where = "import bridge, broker; print(bridge.__file__); print(broker.__file__)"
    done = run([str(venv_bin / "python"), "-c", where], tmp_path, elsewhere)
    assert done.returncode == 0, done.stderr
    site = venv_bin.parent / "lib"
    assert all(Path(line).is_relative_to(site) for line in done.stdout.split()), done.stdout
    helped = run([str(venv_bin / "spc-bridge"), "--help"], tmp_path, elsewhere)
    assert helped.returncode == 0 and "usage: spc-bridge" in helped.stdout, helped.stderr


def test_the_installed_broker_and_demo_start_and_stop(venv_bin: Path, tmp_path: Path) -> None:
    for name, args in (("broker", ["--allow-anonymous"]), ("demo", ["--db", f"sqlite:///{tmp_path / 'demo.db'}"])):
        port, ws_port = free_port(), free_port()
        extra = ["--dashboard-port", str(free_port())] if name == "demo" else []
        child = ChildProcess([name, "--port", str(port), "--ws-port", str(ws_port), *extra, *args],
                             tmp_path / f"{name}.log", "Ctrl-C stops it", command=[str(venv_bin / "spc-bridge")],
                             cwd=tmp_path)
        child.start()
        try:
            wait_for_ports(HOST, (port, ws_port), 10.0, lambda: child.proc is not None and child.proc.poll() is None)
        finally:
            assert child.stop() == 0, child.output()


def test_the_installed_dashboard_has_every_file_of_the_page(venv_bin: Path, tmp_path: Path,
                                                             elsewhere: dict[str, str]) -> None:
    # No build step at install: the page, its modules and the vendored libraries come in the wheel.
    script = "import json; from bridge.dashboard.site import site; print(json.dumps(sorted(site(None))))"
    done = run([str(venv_bin / "python"), "-c", script], tmp_path, elsewhere)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == sorted(site(None))
    assert {"/index.html", "/js/main.js", "/vendor/mqtt.min.js", "/vendor/uPlot.iife.min.js"} <= set(site(None))


def test_the_bench_runs_its_mosquitto_from_the_shipped_configuration_and_plugin_source(
        venv_bin: Path, tmp_path: Path, elsewhere: dict[str, str]) -> None:
    # The bench's own broker: mosquitto.conf and the plugin's source from the package, the plugin built in the cache.
    script = ("import sys; from pathlib import Path; from bridge.bench.brokers import start_mosquitto\n"
              "broker = start_mosquitto(Path(sys.argv[1]))\nprint(broker.address.port)\nbroker.stop()\n")
    (tmp_path / "bench").mkdir()
    done = run([str(venv_bin / "python"), "-c", script, str(tmp_path / "bench")], tmp_path, elsewhere)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".cache/spc-bridge/mosquitto_plugin/clientid_owner.so").is_file()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))  # type: ignore[union-attr]
            for requirement in requirements}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_library_the_code_imports_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared |= _requirement_names(extra)
    distributions = importlib.metadata.packages_distributions()
    undeclared: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
                    modules = [node.module]
                else:
                    continue
                for top in {module.split(".")[0] for module in modules} - set(PACKAGES) - sys.stdlib_module_names:
                    names = {_normalized(name) for name in distributions.get(top, [top])}
                    if not names & declared:
                        undeclared[top] = str(path.relative_to(REPO))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_bench_extra_declares_what_the_bench_imports() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "psutil" in _requirement_names(extras["bench"])
