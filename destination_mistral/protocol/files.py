"""The files a command names: `--config` and `--catalog`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from destination_mistral.protocol.catalog import Catalog, catalog_from_json
from destination_mistral.protocol.describe import first_line
from mistral_connection.errors import config_error


def read_config(config_path: str) -> dict[str, Any]:
    try:
        config = orjson.loads(Path(config_path).read_bytes())
    except (OSError, ValueError) as error:
        raise config_error(
            f"The config file could not be read as JSON ({first_line(error)}): pass a JSON object."
        ) from None
    if not isinstance(config, dict):
        raise config_error(f"The config file holds a JSON {type(config).__name__}, not an object: pass a JSON object.")
    return config


def read_configured_catalog(path: str) -> Catalog:
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except OSError as error:
        raise config_error(
            f"The configured catalog {path!r} cannot be read: {error.strerror or first_line(error)}."
        ) from None
    except orjson.JSONDecodeError as error:
        raise config_error(f"The configured catalog {path!r} is not valid JSON ({first_line(error)}).") from None
    return catalog_from_json(raw, repr(path))
