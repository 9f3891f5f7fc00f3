"""Logging of every command: plain text or one JSON object a line, secrets masked, failures in one line.

JSON lines have stable field names: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, any
extra fields the line was logged with (``topic``, ``reason``, ...) and ``exception`` (a traceback).
Every secret handed to :func:`hide_secret` is replaced by ``***`` in whatever is written, whichever
the format: URLs are masked where they are logged, and this catches what slips through (a driver's
error message, a traceback).
"""

import json
import logging
import sys
import traceback
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

FORMATS = ("text", "json")
FORMAT_ENV = "SPC_BRIDGE_LOG_FORMAT"
MASK = "***"
MIN_SECRET = 4  # shorter values would mask every such letter in every line; their URLs are masked anyway
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has: anything else on a record came as an extra field.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_CONTROL = {code: f"\\x{code:02x}" for code in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}

_secrets: set[str] = set()
_format = "text"


def hide_secret(secret: str | None) -> None:
    """Never write ``secret`` (a password), nor its URL-encoded form, in a log line or a failure."""
    if secret and len(secret) >= MIN_SECRET:
        _secrets.update({secret, quote(secret, safe="")})


def masked(text: str) -> str:
    """``text`` with every secret replaced by ***."""
    for secret in _secrets:
        text = text.replace(secret, MASK)
    return text


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>``, a message on one line (control characters escaped, so that
    a topic or a payload cannot forge lines) and a traceback below it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL)
        return masked(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return masked(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, the extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": masked(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = masked(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = masked(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=lambda value: masked(str(value)))


def configure(verbose: bool, log_format: str) -> None:
    """Send every logger to standard error in ``log_format`` (text or json), DEBUG with ``verbose``."""
    global _format
    _format = log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)


def report_failure(message: str, error: BaseException | None, verbose: bool) -> None:
    """Tell the user what failed and what to do, in one line (a JSON line with --log-format json);
    ``verbose`` adds the traceback of ``error``."""
    if _format == "json":
        logging.getLogger("spc-bridge").error("%s", message, exc_info=error if verbose else None)
        return
    if verbose and error is not None:
        print(masked("".join(traceback.format_exception(error))), end="", file=sys.stderr)
    print(masked(f"spc-bridge: {message}"), file=sys.stderr, flush=True)
