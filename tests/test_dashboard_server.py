"""``spc-bridge dashboard`` as a real process: the files it serves and refuses, its headers, the contract module
generated from bridge/contract.py, ``--export`` for Mosquitto's http_dir, and the vendored libraries against
their lock file."""

import hashlib
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import contract
from bridge.dashboard.site import STATIC
from tests.brokers import HOST, MosquittoProcess, free_port
from tests.credentials import Certificates
from tests.processes import REPO, ChildProcess

BROKER_WS = "ws://127.0.0.1:9001/mqtt"
VENDOR = REPO / "bridge" / "dashboard" / "vendor"
TIMEOUT = 10.0


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    """The dashboard command on a free port; its base URL."""
    port = free_port()
    server = ChildProcess(["dashboard", "--port", str(port), "--broker-ws", BROKER_WS], tmp_path / "dashboard.log",
                          "dashboard on http://")
    server.start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        assert server.stop() == 0, server.output()
    assert "dashboard stopped" in server.output()


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_page_and_everything_it_loads_are_served_with_their_types(dashboard: str) -> None:
    status, headers, body = fetch(f"{dashboard}/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assets = [asset for asset in re.findall(r'(?:src|href)="([^"#]+)"', page) if not asset.startswith("data:")]
    assert {"vendor/mqtt.min.js", "vendor/uPlot.iife.min.js", "js/main.js"} <= set(assets)
    modules = {path.name for path in (STATIC / "js").glob("*.js")} | {"contract.js"}
    for module in modules:  # every relative import of every module resolves
        status, headers, text = fetch(f"{dashboard}/js/{module}")
        assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8", module
        assets += [f"js/{name}" for name in re.findall(r'from "\./([^"]+)"', text.decode())]
    expected = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for asset in set(assets):
        status, headers, _ = fetch(f"{dashboard}/{asset}")
        assert status == 200, asset
        assert headers["Content-Type"] == expected[Path(asset).suffix], asset
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_only_the_sites_files_and_no_secret(dashboard: str) -> None:
    _, headers, _ = fetch(f"{dashboard}/")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self' ws://127.0.0.1:9001;" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    status, headers, body = fetch(f"{dashboard}/config.json")
    assert status == 200 and json.loads(body) == {"broker_ws": BROKER_WS} and headers["Cache-Control"] == "no-store"
    for path in ("/js/", "/vendor/", "/../pyproject.toml", "/%2e%2e/pyproject.toml", "/js/../../server.py",
                 "/vendor/package.json", "/server.py", "/nothing"):
        assert fetch(f"{dashboard}{path}")[0] == 404, path
    assert fetch(f"{dashboard}/", "POST")[0] == 405
    assert fetch(f"{dashboard}/js/main.js", "HEAD")[:1] == (200,)
    sources = "".join(path.read_text() for path in STATIC.rglob("*") if path.suffix in (".js", ".html")
                      and path.parent.name != "vendor")
    assert "localStorage" not in sources and "sessionStorage" not in sources and "password=" not in sources


def test_the_contract_module_spells_the_topics_of_bridge_contract(dashboard: str) -> None:
    text = fetch(f"{dashboard}/js/contract.js")[2].decode()
    constants = {name: json.loads(value) for name, value in re.findall(r"export const (\w+) = (.*);", text)}
    assert constants["TOPICS"] == {"sample": contract.sample_topic("{id}"), "violation": contract.violation_topic("{id}"),
                                   "ack": contract.ack_topic("{id}"), "limits": contract.limits_topic("{id}"),
                                   "status": contract.status_topic("{id}")}
    assert constants["REQUEST_TOPIC"] == contract.request_topic("{user}", "{command}")
    assert constants["RESPONSE_TOPIC"] == contract.response_topic("{user}", "{command}")
    assert list(constants["COMMANDS"]) == list(contract.COMMANDS)
    assert constants["DEFAULT_REASON_CODES"] == list(contract.DEFAULT_REASON_CODES)
    assert (constants["STATE_TOPIC"], constants["MAX_ACK_IDS"]) == (contract.STATE_TOPIC, contract.MAX_ACK_IDS)


def test_export_writes_the_site_for_mosquittos_http_dir(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bridge", "dashboard", "--export", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    site = tmp_path / "site"
    assert json.loads((site / "config.json").read_text()) == {"broker_ws": None}  # the page's own origin
    assert (site / "index.html").read_bytes() == (STATIC / "index.html").read_bytes()
    assert (site / "js" / "contract.js").is_file() and (site / "vendor" / "uPlot.iife.min.js").is_file()


def test_mosquittos_websocket_listener_serves_the_exported_site(tmp_path: Path, role_users: Path,
                                                                certificates: Certificates) -> None:
    """docs/dashboard.md's Mosquitto set-up: ``http_dir`` on the WebSocket listener serves the export, and the
    page then connects to that listener itself."""
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "bridge", "dashboard", "--export", str(site)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    mosquitto = MosquittoProcess(tmp_path, (free_port(), free_port(), free_port(), free_port()), role_users,
                                 certificates)
    conf = mosquitto.conf_path.read_text()
    listener = f"listener {mosquitto.ws_port} lo\nprotocol websockets\n"
    assert listener in conf
    mosquitto.conf_path.write_text(conf.replace(listener, f"{listener}http_dir {site}\n"))
    mosquitto.start()
    try:
        base = f"http://{HOST}:{mosquitto.ws_port}"
        status, _, body = fetch(f"{base}/index.html")
        assert status == 200 and body == (STATIC / "index.html").read_bytes()
        assert json.loads(fetch(f"{base}/config.json")[2]) == {"broker_ws": None}
        assert fetch(f"{base}/vendor/mqtt.min.js")[0] == 200
    finally:
        mosquitto.stop()


def test_the_vendored_libraries_are_those_of_the_lock_file() -> None:
    lock = json.loads((VENDOR / "package-lock.json").read_text())["packages"]
    versions = json.loads((STATIC / "vendor" / "VERSIONS.json").read_text())
    assert set(versions) == set(lock[""]["dependencies"]) == {"mqtt", "uplot"}
    for name, entry in versions.items():
        assert entry["version"] == lock[f"node_modules/{name}"]["version"] == lock[""]["dependencies"][name]
        assert entry["license"] == "MIT"
        for file, digest in entry["files"].items():
            assert hashlib.sha256((STATIC / "vendor" / file).read_bytes()).hexdigest() == digest, file
    shipped = {path.name for path in (STATIC / "vendor").iterdir()}
    assert shipped == {"VERSIONS.json", *(file for entry in versions.values() for file in entry["files"])}
