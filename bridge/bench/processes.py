"""Child processes of the benchmark: started with this Python, stopped by PID, every wait bounded."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

STOP_TIMEOUT_S = 20.0


def python(module: str, *args: str) -> list[str]:
    """The command running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


class Child:
    """A command with its output in ``log_path``."""

    def __init__(self, command: Sequence[str], log_path: Path) -> None:
        self.command = list(command)
        self.name = Path(self.command[0]).name if self.command[1:2] != ["-m"] else self.command[2]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    @property
    def pid(self) -> int:
        """PID of the running process."""
        if self.proc is None:
            raise RuntimeError("not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, ready: Callable[[], bool], timeout: float) -> None:
        """Start it and wait (bounded) until ``ready()`` holds; its log in the error if not."""
        self.launch()
        self.wait_until(ready, timeout)

    def launch(self) -> None:
        """Start it without waiting; ``output()`` shows what this start logs."""
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Wait (bounded) until ``ready()`` holds while it runs; stopped, with its log in the error, if not."""
        if self.proc is None:
            raise RuntimeError("not running")
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} not ready within {timeout} s:\n"
                                   f"{self.output()[-3000:]}")
            time.sleep(0.02)

    def output(self) -> str:
        """What this start has logged so far."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode("utf-8", "replace")

    def terminate(self) -> None:
        """Send it SIGTERM without waiting (``stop`` waits)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                return proc.wait(timeout)
        return proc.returncode

    def memory(self) -> tuple[int, int]:
        """Resident memory now and at its peak (VmHWM), in bytes."""
        process = psutil.Process(self.pid)
        rss = process.memory_info().rss
        with open(f"/proc/{self.pid}/status") as status:
            peak = next((int(line.split()[1]) * 1024 for line in status
                         if line.startswith("VmHWM:")), rss)
        return rss, peak
