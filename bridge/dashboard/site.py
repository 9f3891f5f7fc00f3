"""The dashboard's files: the static pages and vendored libraries, the generated contract module, and config.json."""

import json
from dataclasses import dataclass
from pathlib import Path

from bridge.dashboard.contract_js import contract_module

STATIC = Path(__file__).resolve().parent / "static"
HOST_PLACEHOLDER = "{host}"  # the page puts the host name it was loaded from in its place
DEFAULT_BROKER_WS = f"ws://{HOST_PLACEHOLDER}:9001/mqtt"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".json": "application/json", ".md": "text/plain; charset=utf-8",
          ".txt": "text/plain; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class File:
    """One file of the site: its content type, and its bytes or the file they are read from."""

    content_type: str
    generated: bytes | None = None
    path: Path | None = None

    def body(self) -> bytes:
        """The bytes, read now from a static file (an edited page shows at its next load)."""
        return self.generated if self.generated is not None else self.path.read_bytes()  # type: ignore[union-attr]


def site(broker_ws: str | None) -> dict[str, File]:
    """Every file by URL path (``/js/main.js``), the paths fixed now; ``broker_ws`` goes into config.json (None: the page assumes
    the broker serves it, as Mosquitto's ``http_dir`` does, and connects to its own origin's ``/mqtt``)."""
    files = {"/" + path.relative_to(STATIC).as_posix(): File(_TYPES.get(path.suffix, "application/octet-stream"),
                                                             path=path)
             for path in sorted(STATIC.rglob("*")) if path.is_file()}
    files["/js/contract.js"] = File(_TYPES[".js"], contract_module().encode())
    files["/config.json"] = File(_TYPES[".json"], json.dumps({"broker_ws": broker_ws}).encode())
    return files


def export(folder: Path, broker_ws: str | None) -> list[Path]:
    """Write the site into ``folder`` (for Mosquitto's ``http_dir``); the files written."""
    written = []
    for url, file in site(broker_ws).items():
        target = folder / url.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.body())
        written.append(target)
    return written
