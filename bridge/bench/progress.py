"""One progress line on stderr, rewritten in place on a terminal, a line every few seconds otherwise."""

import sys
import time
from typing import TextIO

QUIET_S = 5.0  # without a terminal, at most one line per QUIET_S unless the phase changes


class Progress:
    """``phase`` names what runs; ``tick`` tells how far it got."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.current = ""
        self._last_line = 0.0

    def phase(self, name: str) -> None:
        """A new phase begins."""
        self.current = name
        self._show(name, force=True)

    def tick(self, detail: str) -> None:
        """News from the running phase."""
        self._show(f"{self.current}: {detail}")

    def done(self) -> None:
        """End the line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        line = f"[bench {now - self.started:5.0f} s] {text}"
        if self.tty:
            self.stream.write(f"\r\033[K{line}")
        elif force or now - self._last_line >= QUIET_S:
            self.stream.write(line + "\n")
        else:
            return
        self._last_line = now
        self.stream.flush()
