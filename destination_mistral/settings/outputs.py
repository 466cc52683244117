"""The `output` block: its rules beyond the spec's schema, and the typed OutputSettings built from it.

In the connector's container (its Dockerfile sets DESTINATION_MISTRAL_LOCAL_ROOT=/local) a DuckDB
file or a JSONL directory must be under that directory: it is the one Airbyte mounts from the host
(/tmp/airbyte_local by default), and anything written elsewhere in the container is gone when the
sync ends, with the STATEs already acknowledged. A relative path is taken under it. Outside the
container (a developer's machine, PyAirbyte) paths are used as given."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from destination_mistral.settings.typed import OutputSettings, PostgresSettings, is_motherduck_path
from mistral_connection.errors import config_error

LOCAL_ROOT_ENV = "DESTINATION_MISTRAL_LOCAL_ROOT"
# Where Airbyte's docker deployments keep what the container writes under /local (LOCAL_ROOT in its .env).
HOST_LOCAL_ROOT = "/tmp/airbyte_local"
_LOCATION_FIELDS = {"duckdb": "path", "jsonl": "directory"}
_POSTGRES_TEXT = ("host", "database", "username")


def check_output(raw: Mapping[str, Any]) -> None:
    """Raises a config error naming the output field to fix."""
    if raw["type"] == "postgres":
        for name in _POSTGRES_TEXT:
            if not raw[name].strip():
                raise config_error(f"`output.{name}` is empty: give the PostgreSQL {name} to write to.")
        if _text(raw.get("schema")).lower().startswith("pg_"):
            raise config_error(
                f"`output.schema` {_text(raw.get('schema'))!r} starts with pg_, which PostgreSQL keeps for its own "
                "schemas: choose another name."
            )
        return
    key = _LOCATION_FIELDS[raw["type"]]
    location = raw[key].strip()
    for name in (key, "schema"):
        if "\x00" in str(raw.get(name, "")):
            # The operating system ends a path at a NUL byte: the file written would not be the one named.
            raise config_error(f"`output.{name}` contains a NUL character: remove it.")
    if not location:
        raise config_error(
            f"`output.{key}` is empty: give the {'DuckDB file' if key == 'path' else 'directory'} to write to."
        )
    if raw["type"] == "duckdb" and location.lower().startswith(":memory:"):
        raise config_error(
            f"`output.path` {location!r} is an in-memory database, gone when the sync ends: nothing would be "
            "stored. Give the path of a DuckDB file."
        )
    if raw["type"] == "duckdb":
        _check_duckdb_schema(raw, location)
    if raw["type"] == "duckdb" and is_motherduck_path(location):
        _check_motherduck(raw, location)
        return
    local_path(location, key)


# Schemas and catalogs every DuckDB connection already has: a table cannot be created in them.
_DUCKDB_RESERVED = frozenset({"information_schema", "pg_catalog", "temp", "system"})


def _check_duckdb_schema(raw: Mapping[str, Any], location: str) -> None:
    schema = _text(raw.get("schema"))
    if not schema:
        return
    database = location.split(":", 1)[1] if is_motherduck_path(location) else Path(location).stem
    # `<schema>.<table>` names the database's own default schema when the schema is the database's name.
    same = schema.lower() == database.strip().lower() and schema.lower() != "main"
    if schema.lower() in _DUCKDB_RESERVED or same:
        what = "the name of the database itself" if same else "one of DuckDB's own schemas"
        raise config_error(
            f"`output.schema` {schema!r} is {what}, where the streams' tables cannot be created: "
            'choose another schema name, e.g. "main" or "enriched".'
        )


def build_output(raw: Mapping[str, Any]) -> OutputSettings:
    """The validated `output` block as settings; a field left out takes the spec's default."""
    given: dict[str, Any] = {}
    if _text(raw.get("schema")):
        given["schema"] = raw["schema"].strip()
    if raw["type"] == "postgres":
        given.setdefault("schema", "public")
        optional = {name: raw[name] for name in ("port", "ssl_mode", "hnsw_index") if name in raw}
        postgres = PostgresSettings(
            host=raw["host"].strip(),
            database=raw["database"].strip(),
            username=raw["username"].strip(),
            password=raw.get("password") or "",
            **optional,
        )
        return OutputSettings(kind="postgres", path=None, postgres=postgres, **given)
    location = raw[_LOCATION_FIELDS[raw["type"]]].strip()
    if raw["type"] == "duckdb":
        if _text(raw.get("storage_version")):
            given["storage_version"] = raw["storage_version"].strip()
        if raw.get("motherduck_token"):
            given["motherduck_token"] = raw["motherduck_token"].strip()
        if is_motherduck_path(location):
            return OutputSettings(kind="duckdb", path=Path(location), **given)
    return OutputSettings(kind=raw["type"], path=local_path(location, _LOCATION_FIELDS[raw["type"]]), **given)


def local_root() -> Path | None:
    """The one directory local outputs may use, when running in the connector's container."""
    value = os.environ.get(LOCAL_ROOT_ENV, "").strip()
    return Path(value) if value else None


def local_path(location: str, key: str) -> Path:
    """Where a local output is written: under the local root in the container (a relative path is
    taken from it), else as given. A path that leaves the root (`..`, a symlink) is a config error."""
    path = Path(location).expanduser()
    root = local_root()
    if root is None:
        return path
    real_root = Path(os.path.realpath(root))
    resolved = Path(os.path.realpath(real_root / path))  # an absolute path replaces the root in the join
    if resolved == real_root or real_root in resolved.parents:
        return resolved
    example = root / (path.name or "destination_mistral")
    raise config_error(
        f"`output.{key}` {location!r} is outside {root}, the only directory the connector's container keeps: "
        f"Airbyte mounts the host's {HOST_LOCAL_ROOT} (LOCAL_ROOT in its .env) at {root}, and anything written "
        f"elsewhere is lost when the sync ends. Write under {root}, e.g. {str(example)!r}, which is "
        f"{HOST_LOCAL_ROOT}/{example.relative_to(root)} on the host; on Airbyte Cloud or Kubernetes use the "
        "PostgreSQL or MotherDuck output."
    )


def _check_motherduck(raw: Mapping[str, Any], location: str) -> None:
    # The path is quoted by messages and logs; a token inside it would be shown with it.
    if "token" in location.lower():
        raise config_error(
            "`output.path` carries a MotherDuck token: write only `md:<database>` there and put the token in "
            "`output.motherduck_token`, which is kept secret."
        )
    if not _text(raw.get("motherduck_token")):
        raise config_error(
            "`output.motherduck_token` is missing: MotherDuck (`output.path` starting with md:) needs an access "
            "token, made in MotherDuck's settings."
        )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
