"""Mosquitto's half of the client-id rule (broker.identity): the plugin clientid_owner.c beside this file, and
building it with its Makefile for the brokers that tests and benchmarks start from the repository's
mosquitto.conf (whose `plugin` line they point at the built file)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

__all__ = ["PLUGIN_LINE", "SOURCE_DIR", "build"]

SOURCE_DIR = Path(__file__).resolve().parent
# build/ of the repository; an installed package (site-packages may be read-only) builds in the user's cache.
_CHECKOUT = SOURCE_DIR.parents[1]
_BUILD_DIR = (_CHECKOUT / "build" if (_CHECKOUT / "pyproject.toml").is_file() else
              Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spc-bridge") / "mosquitto_plugin"
_BUILD_TIMEOUT_S = 120.0
# mosquitto.conf's line that loads the plugin (production path; `make install` puts it there).
PLUGIN_LINE = re.compile(r"^plugin /usr/local/lib/spc-bridge/clientid_owner\.so$", re.MULTILINE)


def build() -> Path:
    """Build the plugin if its source changed (make) and return the path of the shared object."""
    try:
        done = subprocess.run(["make", "-s", "-C", str(SOURCE_DIR), f"BUILD={_BUILD_DIR}"], capture_output=True,
                              text=True, timeout=_BUILD_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise RuntimeError("cannot build the Mosquitto plugin: install make and gcc") from None
    if done.returncode != 0:
        raise RuntimeError("cannot build the Mosquitto plugin (apt-get install gcc make mosquitto-dev "
                           f"libmosquitto-dev): {(done.stderr or done.stdout).strip()}")
    return _BUILD_DIR / "clientid_owner.so"
