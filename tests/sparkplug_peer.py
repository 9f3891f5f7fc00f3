"""An independently written Sparkplug B edge node for the tests: Eclipse Tahu's JavaScript client run by Node.js
(tests/sparkplug/edge/edge_node.js), driven over its stdin and stdout; every wait bounded, stopped by PID."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from tests.brokers import terminate

EDGE_DIR = Path(__file__).resolve().parent / "sparkplug" / "edge"
DRIVER = EDGE_DIR / "edge_node.js"
TIMEOUT = 10.0
EXIT_TIMEOUT = 5.0
_STDERR_LINES = 50
_EOF = object()  # what the stdout reader queues when the driver's stdout closes

Metric = dict[str, Any]


def metric(value: bool | int | float | str | None, datatype: str = "Double", *, name: str | None = None,
           alias: int | None = None, timestamp: int | None = None, historical: bool = False) -> Metric:
    """A metric as the driver takes it: `datatype` a Sparkplug datatype name ("Double", "Int32", "Int64", "Float",
    "Boolean", "String", ...), `value` None for is_null, `timestamp` ms since the epoch (default: now)."""
    entry: Metric = {"type": datatype, "value": value, "timestamp": timestamp if timestamp is not None else now_ms()}
    if name is not None:
        entry["name"] = name
    if alias is not None:
        entry["alias"] = alias
    if historical:
        entry["isHistorical"] = True
    return entry


def now_ms() -> int:
    """The time now in ms since the epoch."""
    return time.time_ns() // 1_000_000


class EdgeNodeError(RuntimeError):
    """The driver answered a command with an error, or did not answer, or exited."""


class EdgeNode:
    """A Sparkplug B edge node (group `group`, edge node `node`) connected to the broker at `url` (mqtt://host:port)
    as `user` with `client_id`. Methods answer with the driver's reply (its `seq`, `bdSeq` where given) once the
    client has the message. `wait_event` returns what the node reported: close (its connection ended), birth (it
    reconnected by itself and re-published its births), ncmd and dcmd (the decoded metrics), rebirth (births
    re-published on an NCMD Node Control/Rebirth)."""

    def __init__(self, url: str, user: str, password: str, client_id: str, group: str, node: str,
                 timeout: float = TIMEOUT) -> None:
        self.start_command = {"op": "start", "url": url, "username": user, "password": password,
                              "client_id": client_id, "group": group, "node": node}
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers: queue.Queue[dict[str, Any] | object] = queue.Queue()
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The driver's PID while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> dict[str, Any]:
        """Spawn the driver and connect; raise EdgeNodeError if Node.js or the npm packages are missing."""
        node = shutil.which("node")
        if node is None:
            raise EdgeNodeError("Node.js (`node`) is not on PATH: the Sparkplug edge-node tests need Node.js 20")
        if not (EDGE_DIR / "node_modules" / "sparkplug-client").is_dir():
            raise EdgeNodeError(f"npm package sparkplug-client missing: run `npm ci` in {EDGE_DIR}")
        self._proc = subprocess.Popen([node, str(DRIVER)], cwd=EDGE_DIR, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._threads = [threading.Thread(target=self._read_stdout, args=(self._proc.stdout,), daemon=True),
                         threading.Thread(target=self._read_stderr, args=(self._proc.stderr,), daemon=True)]
        for thread in self._threads:
            thread.start()
        try:
            return self._command(self.start_command)
        except BaseException:
            self.close()
            raise

    def nbirth(self, metrics: list[Metric]) -> dict[str, Any]:
        """Publish an NBIRTH with `metrics` (the client adds bdSeq); the driver keeps it for rebirths."""
        return self._command({"op": "nbirth", "metrics": metrics})

    def dbirth(self, device: str, metrics: list[Metric]) -> dict[str, Any]:
        """Publish a DBIRTH of `device`; the driver keeps it for rebirths until its DDEATH."""
        return self._command({"op": "dbirth", "device": device, "metrics": metrics})

    def ndata(self, metrics: list[Metric]) -> dict[str, Any]:
        """Publish an NDATA (metrics by name, alias or both)."""
        return self._command({"op": "ndata", "metrics": metrics})

    def ddata(self, device: str, metrics: list[Metric]) -> dict[str, Any]:
        """Publish a DDATA of `device`."""
        return self._command({"op": "ddata", "device": device, "metrics": metrics})

    def ddeath(self, device: str) -> dict[str, Any]:
        """Publish a DDEATH of `device`."""
        return self._command({"op": "ddeath", "device": device})

    def skip_seq(self) -> dict[str, Any]:
        """Make the next message's seq jump by one (a message lost on the way, as the host sees it)."""
        return self._command({"op": "skip_seq"})

    def restart(self) -> dict[str, Any]:
        """Stop cleanly (NDEATH, DISCONNECT), reconnect with the next bdSeq and re-publish the births."""
        return self._command({"op": "restart"})

    def kill(self) -> None:
        """Cut the connection without DISCONNECT (the broker publishes the NDEATH will) and end the driver."""
        self._command({"op": "kill"})
        self._wait_exit()

    def wait_event(self, kind: str, timeout: float | None = None) -> dict[str, Any]:
        """Remove and return the oldest event of `kind` the node reported; raise EdgeNodeError after `timeout`."""
        limit = self.timeout if timeout is None else timeout
        with self._changed:
            if not self._changed.wait_for(lambda: any(e["event"] == kind for e in self._events), limit):
                raise EdgeNodeError(f"no {kind!r} event within {limit} s; events: {self._events}{self._stderr_tail()}")
            event = next(e for e in self._events if e["event"] == kind)
            self._events.remove(event)
            return event

    def close(self) -> None:
        """Stop the node cleanly (NDEATH) if it runs, then make sure the process is gone (SIGTERM, SIGKILL)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._command({"op": "stop"})
                self._wait_exit()
            except EdgeNodeError:
                pass  # it did not stop cleanly: end it by PID below
        terminate(proc)
        for thread in self._threads:
            thread.join(EXIT_TIMEOUT)  # the pipes are at their end now that the process is gone
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self._proc = None

    def _command(self, command: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            raise EdgeNodeError(f"the edge node is not running{self._stderr_tail()}")
        try:
            proc.stdin.write(json.dumps(command).encode() + b"\n")
            proc.stdin.flush()
        except OSError as exc:
            raise EdgeNodeError(f"{command['op']}: cannot write to the edge node: {exc}{self._stderr_tail()}") from None
        try:
            answer = self._answers.get(timeout=self.timeout)
        except queue.Empty:
            raise EdgeNodeError(f"{command['op']}: no answer within {self.timeout} s{self._stderr_tail()}") from None
        if not isinstance(answer, dict):
            raise EdgeNodeError(f"{command['op']}: the edge node exited{self._stderr_tail()}")
        if not answer.get("ok"):
            raise EdgeNodeError(f"{command['op']}: {answer.get('error')}")
        return answer

    def _wait_exit(self) -> None:
        assert self._proc is not None
        try:
            self._proc.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise EdgeNodeError(f"the edge node did not exit within {EXIT_TIMEOUT} s") from None

    def _read_stdout(self, stdout: IO[bytes]) -> None:
        for raw in stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                self._stderr.append(f"stdout, not JSON: {raw!r}")
                continue
            if "event" in message:
                with self._changed:
                    self._events.append(message)
                    self._changed.notify_all()
            else:
                self._answers.put(message)
        self._answers.put(_EOF)

    def _read_stderr(self, stderr: IO[bytes]) -> None:
        for raw in stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip())

    def _stderr_tail(self) -> str:
        return "; stderr:\n" + "\n".join(self._stderr) if self._stderr else ""
