"""The repository as a fresh clone has it, and spc-bridge installed from it with a plain `pip install` into a
virtual environment of its own: what a user gets, without the repository around it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.processes import REPO

INSTALL_TIMEOUT = 300.0


def checkout(destination: Path) -> Path:
    """Copy the repository's files (tracked and untracked, none that git ignores) to `destination`; return it."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file() or source.is_symlink():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name, follow_symlinks=False)
    return destination


def installed_venv(source: Path, venv: Path) -> Path:
    """A virtual environment at `venv` with spc-bridge installed from `source` by `pip install` (a wheel, not
    editable); the packages it depends on come from this machine's Python (--system-site-packages), so nothing
    but the build backend is fetched. Returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                   capture_output=True, timeout=INSTALL_TIMEOUT)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--quiet", str(source)],
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert done.returncode == 0, f"pip install {source} failed:\n{done.stdout}{done.stderr}"
    return venv / "bin"
