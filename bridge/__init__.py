"""spc-bridge: Statistical Process Control between shop-floor MQTT and SCADA/dashboards."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version


def version() -> str:
    """The installed spc-bridge's version (package metadata)."""
    try:
        return _package_version("spc-bridge")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
