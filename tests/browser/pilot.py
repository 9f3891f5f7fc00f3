"""A Python handle on ``node pilot.mjs``: headless Chromium (Debian's, driven by playwright-core) kept running
across many steps, with named pages (each its own browser context unless told otherwise).

Every call is bounded in time and raises PilotError with the page's console errors and uncaught exceptions
when it fails or times out. ``Pilot`` is a context manager; it ends node by PID (quit, then SIGTERM, then
SIGKILL) and removes the temporary directory Chromium's profile lived in.

    with Pilot() as pilot:
        pilot.open("operator")
        pilot.goto("operator", "http://127.0.0.1:8080/")
        pilot.fill("operator", "#login-user", "operator")
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.brokers import terminate

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DEFAULT_TIMEOUT = 15.0   # seconds, each command unless told otherwise
MARGIN = 5.0             # beyond a command's own timeout before the Python side gives up on node
START_TIMEOUT = 60.0     # the first page starts Chromium
STOP_TIMEOUT = 10.0


def missing_tools() -> list[str]:
    """What the pilot needs and this machine lacks (empty when all is there)."""
    return [what for what, present in (
        ("node", shutil.which("node") is not None), (CHROMIUM, Path(CHROMIUM).exists()),
        ("npm package playwright-core", (HERE / "node_modules" / "playwright-core").is_dir()),
    ) if not present]


class PilotError(AssertionError):
    """A command failed or timed out; the message has the page's problems (console errors, exceptions)."""


class Pilot:
    """``node pilot.mjs``: one Chromium, many named pages; one bounded call per command."""

    def __init__(self, default_timeout: float = DEFAULT_TIMEOUT) -> None:
        missing = missing_tools()
        if missing:
            raise PilotError(f"missing {', '.join(missing)}: run `bash .ci/run` (or `npm ci` in tests/browser)")
        self.default_timeout = default_timeout
        self._next_id = 0
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._late: dict[int, dict[str, Any]] = {}
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        # Chromium's temporary profile goes under TMPDIR: ours, removed at stop whatever happened to node.
        self._tmp = Path(tempfile.mkdtemp(prefix="spc-pilot-"))
        self.proc = subprocess.Popen(
            ["node", "pilot.mjs", "--timeout", str(int(default_timeout * 1000))], cwd=HERE,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            env=dict(os.environ, CHROMIUM=CHROMIUM, TMPDIR=str(self._tmp)))
        threading.Thread(target=self._read_answers, name="pilot-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="pilot-stderr", daemon=True).start()

    # -- the protocol --------------------------------------------------------------------------------------

    def call(self, cmd: str, page: str | None = "main", timeout: float | None = None, **arguments: Any) -> Any:
        """Send one command and return its result; PilotError if it fails or has no answer in time."""
        timeout = self.default_timeout if timeout is None else timeout
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            command: dict[str, Any] = {"id": ident, "cmd": cmd, "timeout": int(timeout * 1000), **arguments}
            if page is not None:
                command["page"] = page
            if self.proc.poll() is not None or self.proc.stdin is None:
                raise PilotError(f"{cmd}: the pilot has exited ({self.proc.returncode}):\n{self._stderr_tail()}")
            try:
                self.proc.stdin.write(json.dumps(command) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as error:
                raise PilotError(f"{cmd}: the pilot is gone ({error}):\n{self._stderr_tail()}") from None
            answer = self._answer(ident, timeout + MARGIN)
        if answer is None:
            problems = self._problems_quietly(page)
            raise PilotError(f"{cmd} {self._brief(arguments)} on page {page!r}: no answer within {timeout + MARGIN} s"
                             f"{self._format(problems)}\n{self._stderr_tail()}")
        if not answer.get("ok"):
            raise PilotError(f"{cmd} {self._brief(arguments)} on page {page!r}: {answer.get('error')}"
                             f"{self._format(answer.get('problems') or [])}")
        return answer.get("result")

    def _answer(self, ident: int, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        if ident in self._late:
            return self._late.pop(ident)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                answer = self._answers.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self._answers.empty():
                    return None
                continue
            if answer.get("id") == ident:
                return answer
            if isinstance(answer.get("id"), int):  # the answer of a call that timed out before
                self._late[answer["id"]] = answer

    def _problems_quietly(self, page: str | None) -> list[str]:
        if page is None or self.proc.poll() is not None:
            return []
        try:
            with self._lock:
                self._next_id += 1
                ident = self._next_id
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": ident, "cmd": "problems", "page": page, "timeout": 2000}) + "\n")
                self.proc.stdin.flush()
                answer = self._answer(ident, 3.0)
        except (OSError, AssertionError):
            return []
        # node answers in order: a hung command delays this one too
        return list(answer.get("result") or []) if answer and answer.get("ok") else ["(the pilot is busy: no problems read)"]

    @staticmethod
    def _brief(arguments: dict[str, Any]) -> str:
        text = json.dumps({k: v for k, v in arguments.items() if k != "timeout"})
        return text if len(text) <= 300 else text[:300] + "…"

    @staticmethod
    def _format(problems: list[str]) -> str:
        return "\npage problems:\n  " + "\n  ".join(problems) if problems else "\n(no console errors on the page)"

    def _stderr_tail(self) -> str:
        tail = "".join(self.stderr)[-3000:]
        return f"pilot stderr:\n{tail}" if tail else ""

    def _read_answers(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:  # a library's notice: kept with the rest of what node said
                self.stderr.append(f"stdout: {line}")
                continue
            if isinstance(answer, dict):
                self._answers.put(answer)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            del self.stderr[:-200]

    # -- commands ------------------------------------------------------------------------------------------

    def open(self, page: str = "main", context: str | None = None, width: int = 1920, height: int = 1080,
             timeout: float = START_TIMEOUT) -> None:
        """A new page; in a new browser context unless ``context`` names the context of another page."""
        arguments: dict[str, Any] = {"viewport": {"width": width, "height": height}}
        if context is not None:
            arguments["context"] = context
        self.call("open", page, timeout, **arguments)

    def close_page(self, page: str = "main") -> None:
        """Close a page (and its context when no other page uses it)."""
        self.call("close", page)

    def goto(self, page: str, url: str, timeout: float | None = None) -> int | None:
        """Load ``url``; the HTTP status."""
        result: int | None = self.call("goto", page, timeout, url=url)
        return result

    def fill(self, page: str, selector: str, value: str, timeout: float | None = None) -> None:
        """Type ``value`` into the field (replacing its text)."""
        self.call("fill", page, timeout, selector=selector, value=value)

    def click(self, page: str, selector: str, timeout: float | None = None) -> None:
        """Click the element (waits until it is visible, enabled and still)."""
        self.call("click", page, timeout, selector=selector)

    def press(self, page: str, key: str, selector: str | None = None, timeout: float | None = None) -> None:
        """Press a key ("Enter", "Tab", "Escape", "Shift+Tab", ...) on the focused element or on ``selector``."""
        arguments: dict[str, Any] = {"key": key}
        if selector is not None:
            arguments["selector"] = selector
        self.call("press", page, timeout, **arguments)

    def type_text(self, page: str, text: str, timeout: float | None = None) -> None:
        """Type text on the keyboard into the focused element."""
        self.call("type", page, timeout, text=text)

    def select(self, page: str, selector: str, value: str, timeout: float | None = None) -> list[str]:
        """Choose the option of ``value`` in a <select>."""
        result: list[str] = self.call("select", page, timeout, selector=selector, value=value)
        return result

    def mouse(self, page: str, action: str, x: float = 0, y: float = 0, steps: int = 1,
              delta_y: float = 0, timeout: float | None = None) -> None:
        """move / down / up / click / dblclick / wheel, at page coordinates."""
        self.call("mouse", page, timeout, action=action, x=x, y=y, steps=steps, deltaY=delta_y)

    def evaluate(self, page: str, expression: str, arg: Any = None, timeout: float | None = None) -> Any:
        """The JSON value of a JS expression (a promise awaited); with ``arg``, ``expression`` is a function's
        source and is called with it."""
        arguments: dict[str, Any] = {"expression": expression}
        if arg is not None:
            arguments["arg"] = arg
        return self.call("evaluate", page, timeout, **arguments)

    def wait_for(self, page: str, selector: str | None = None, expression: str | None = None, arg: Any = None,
                 state: str = "visible", timeout: float | None = None) -> Any:
        """Wait (bounded) for an element in ``state`` (visible, attached, hidden, detached), or for a JS
        expression (or, with ``arg``, a function's source) to be truthy: its value."""
        if (selector is None) == (expression is None):
            raise ValueError("wait_for: give a selector or an expression")
        arguments: dict[str, Any] = {"selector": selector, "state": state} if selector is not None \
            else {"expression": expression}
        if arg is not None:
            arguments["arg"] = arg
        return self.call("wait_for", page, timeout, **arguments)

    def text(self, page: str, selector: str, timeout: float | None = None) -> str:
        """The rendered text of the first element matching ``selector`` (waits for it)."""
        result: str = self.call("text", page, timeout, selector=selector)
        return result

    def texts(self, page: str, selector: str, timeout: float | None = None) -> list[str]:
        """The rendered texts of every element matching ``selector`` now."""
        result: list[str] = self.call("texts", page, timeout, selector=selector)
        return result

    def count(self, page: str, selector: str, timeout: float | None = None) -> int:
        """How many elements match ``selector`` now."""
        result: int = self.call("count", page, timeout, selector=selector)
        return result

    def screenshot(self, page: str, path: Path, full_page: bool = True, timeout: float | None = None) -> Path:
        """Save a PNG of the page."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.call("screenshot", page, timeout, path=str(path), full_page=full_page)
        return path

    def metrics(self, page: str, timeout: float | None = None) -> dict[str, float]:
        """Chromium's performance metrics of the page (DevTools Performance.getMetrics): JSHeapUsedSize, Nodes, ..."""
        result: dict[str, float] = self.call("metrics", page, timeout)
        return result

    def cdp(self, page: str, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """A DevTools protocol call on the page ("HeapProfiler.collectGarbage", ...): its result."""
        return self.call("cdp", page, timeout, method=method, params=params or {})

    def problems(self, page: str) -> list[str]:
        """The page's console errors and uncaught exceptions so far."""
        result: list[str] = self.call("problems", page)
        return result

    def console(self, page: str) -> list[str]:
        """Everything the page logged (the newest 500 messages), and failed requests."""
        result: list[str] = self.call("console", page)
        return result

    # -- lifetime ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask node to quit (it closes Chromium), then SIGTERM, then SIGKILL, each bounded; remove the profile."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": 0, "cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except (OSError, AssertionError, ValueError):
                pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                terminate(self.proc)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
