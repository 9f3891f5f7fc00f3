"""The bridge and the demo as real child processes, started and stopped by PID, every wait bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


class ChildProcess:
    """``python -m bridge <args>`` (or ``command <args>``, run in ``cwd``) with its output in a log file."""

    def __init__(self, args: Sequence[str], log_path: Path, ready_line: str,
                 command: Sequence[str] = (sys.executable, "-m", "bridge"), cwd: Path = REPO) -> None:
        self.args = list(args)
        self.command = list(command)
        self.cwd = cwd
        self.log_path = log_path
        self.ready_line = ready_line
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int:
        """PID of the running process."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start it and wait (bounded) until its log shows ``ready_line`` past this start."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([*self.command, *self.args], cwd=self.cwd,
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while self.ready_line not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"not ready within {START_TIMEOUT} s:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        """What this start has logged so far."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode("utf-8", "replace")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and wait for the exit code (SIGKILL after STOP_TIMEOUT)."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                return proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGUSR1)  # the bridge dumps its threads' stacks to the log
                time.sleep(0.5)
                proc.kill()
                proc.wait(STOP_TIMEOUT)
                raise TimeoutError(f"no exit {STOP_TIMEOUT} s after signal {signum}:\n"
                                   f"{self.output()[-6000:]}") from None
        return proc.returncode

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            self.proc = None


# The brokers admit user "bridge" under "bridge" or "bridge:<anything>" only (broker.identity).
BRIDGE_CLIENT_ID = "bridge:test"


def bridge_process(tmp_path: Path, broker_url: str, db_url: str, config: Path,
                   client_id: str | None = BRIDGE_CLIENT_ID, *extra: str) -> ChildProcess:
    """``spc-bridge run`` against ``broker_url`` (not started yet); `client_id` None: the bridge's default."""
    options = ["--client-id", client_id] if client_id is not None else []
    return ChildProcess(["run", "--broker", broker_url, "--db", db_url, "--config", str(config), *options, *extra],
                        tmp_path / f"{client_id or 'default-id'}.log", "MQTT Connected")
