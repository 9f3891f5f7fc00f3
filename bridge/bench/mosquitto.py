"""Mosquitto running the repository's ``mosquitto.conf`` on free loopback ports in a temporary
directory, with the users of a users directory (the benchmark's own broker)."""

import getpass
import re
import shutil
from pathlib import Path

from broker.mosquitto_plugin import PLUGIN_LINE
from broker.mosquitto_plugin import build as build_plugin
from broker.users import UserDirectory

# The repository's mosquitto.conf, shipped in the package as broker/mosquitto.conf (a link to it in the repository).
REPO_CONF = Path(__file__).resolve().parents[2] / "broker" / "mosquitto.conf"


def executable() -> str:
    """The path of the Mosquitto broker (Debian installs it in /usr/sbin)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    return found


def _without_tls(conf: str) -> str:
    """``conf`` without its TLS listeners (a listener line and the lines up to the next blank
    line, when they name a certfile): the benchmark measures plain MQTT."""
    blocks = re.split(r"(?m)(?=^listener )", conf)
    kept = []
    for block in blocks:
        body, _, rest = block.partition("\n\n")
        if block.startswith("listener ") and re.search(r"(?m)^certfile ", body):
            block = rest
        kept.append(block)
    return "".join(kept)


def config(conf: str, host: str, port: int, ws_port: int, workdir: Path, users: UserDirectory) -> str:
    """``conf`` with loopback listeners on the given ports, persistence in ``workdir``, the
    password and ACL files of ``users``, the client-id plugin built from the repository and no TLS
    listener."""
    conf = _without_tls(conf)
    rewrites = {
        r"^listener 1883$": f"listener {port} {host}",
        # Mosquitto 2.0 ignores a bind address on a WebSocket listener; an interface name keeps it local
        r"^listener 9001$": f"listener {ws_port} lo",
        r"^persistence_location .*$": f"persistence_location {workdir}/",
        r"^password_file .*$": f"password_file {users.mosquitto_passwords}",
        r"^acl_file .*$": f"acl_file {users.mosquitto_acl}",
        PLUGIN_LINE.pattern: f"plugin {build_plugin()}",
    }
    for pattern, replacement in rewrites.items():
        conf, count = re.subn(pattern, replacement, conf, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f"mosquitto.conf: expected one line matching {pattern!r}, found {count}")
    if re.search(r"(?m)^(listener|certfile) ", re.sub(r"(?m)^listener \d+ (lo|127\.0\.0\.1)$", "", conf)):
        raise ValueError("mosquitto.conf: a listener the benchmark does not know how to keep local")
    # started as root, Mosquitto would drop to the "mosquitto" user, who cannot write to workdir
    return f"{conf}\nuser {getpass.getuser()}\n"


def write_config(workdir: Path, host: str, port: int, ws_port: int, users: UserDirectory) -> Path:
    """The configuration file in ``workdir``; its path."""
    path = workdir / "mosquitto.conf"
    path.write_text(config(REPO_CONF.read_text(), host, port, ws_port, workdir, users))
    return path
