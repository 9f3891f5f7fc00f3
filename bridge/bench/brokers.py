"""The broker a benchmark runs against: its own Mosquitto or embedded broker, or one given by URL."""

import secrets
import socket
from pathlib import Path
from urllib.parse import quote

from bridge.bench import mosquitto
from bridge.bench.processes import Child, python
from bridge.config import BrokerUrl, parse_broker_url
from broker.identity import SEPARATOR
from broker.users import User, UserDirectory

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
USERNAME = "bench"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(host: str, port: int) -> bool:
    """True when ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def client_id(url: str, name: str) -> str:
    """A client id that the user of ``url`` may connect with (broker.identity): ``user:name``."""
    user = parse_broker_url(url).username
    return f"{user}{SEPARATOR}{name}" if user else name


class BenchBroker:
    """Where the benchmark's clients connect; ``stop()`` stops the broker if the bench started it."""

    def __init__(self, kind: str, url: str, process: Child | None = None) -> None:
        self.kind = kind
        self.url = url
        self.address: BrokerUrl = parse_broker_url(url)
        self.process = process

    def stop(self) -> None:
        """Stop the broker process (by PID) if this benchmark started one."""
        if self.process is not None:
            self.process.stop()


def _admin(workdir: Path) -> tuple[UserDirectory, str]:
    """A users directory with one throwaway admin user; the directory and its password."""
    users = UserDirectory(workdir / "users")
    users.path.mkdir()
    password = secrets.token_urlsafe(16)
    users.add(User(USERNAME, "admin"), password)
    return users, password


def _url(port: int, password: str) -> str:
    return f"mqtt://{USERNAME}:{quote(password, safe='')}@{HOST}:{port}"


def start_mosquitto(workdir: Path) -> BenchBroker:
    """Mosquitto with the repository's configuration on free loopback ports."""
    port, ws_port = free_port(), free_port()
    users, password = _admin(workdir)
    conf = mosquitto.write_config(workdir, HOST, port, ws_port, users)
    process = Child([mosquitto.executable(), "-c", str(conf)], workdir / "mosquitto.log")
    process.start(lambda: accepts(HOST, port) and accepts(HOST, ws_port), START_TIMEOUT_S)
    return BenchBroker("mosquitto", _url(port, password), process)


def start_embedded(workdir: Path) -> BenchBroker:
    """The embedded broker (``spc-bridge broker``) as a child process on free loopback ports."""
    port, ws_port = free_port(), free_port()
    users, password = _admin(workdir)
    process = Child(python("bridge", "broker", "--host", HOST, "--port", str(port), "--ws-port",
                           str(ws_port), "--users", str(users.path)), workdir / "embedded-broker.log")
    process.start(lambda: accepts(HOST, port), START_TIMEOUT_S)
    return BenchBroker("embedded", _url(port, password), process)


def open_broker(choice: str, workdir: Path) -> BenchBroker:
    """``embedded``, ``mosquitto`` or the URL of a running broker (credentials in the URL)."""
    if choice == "mosquitto":
        return start_mosquitto(workdir)
    if choice == "embedded":
        return start_embedded(workdir)
    parse_broker_url(choice)  # a ConfigError names what is wrong with it
    return BenchBroker("url", choice)
