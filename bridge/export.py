"""``spc-bridge characteristics export``: the database's current characteristics as a file to import again."""

import json
from typing import Any

import tomli_w
from sqlalchemy.engine import Engine

from bridge.service import catalog


def characteristics_toml(engine: Engine) -> str:
    """The running characteristics (not retired), their ingest roots and reason codes, as TOML in the
    format of the characteristics file: ``spc-bridge run --config`` applies it as is."""
    with engine.connect() as conn:
        configs = catalog.stored_configs(conn)
        document: dict[str, Any] = {"reason_codes": list(catalog.reason_codes(conn))}
        roots = catalog.ingest_roots(conn)
    if roots:
        document["ingest_roots"] = list(roots)
    document["characteristic"] = [
        {key: value for key, value in json.loads(config.model_dump_json()).items() if value is not None}
        for config in configs]
    return tomli_w.dumps(document)
