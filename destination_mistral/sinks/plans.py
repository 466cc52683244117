"""A stream's plan from its configured stream and the config: typed columns from its JSON schema,
the sync mode, primary key and cursor append_dedup needs, and the enrichment's output."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from destination_mistral.settings import ChatSettings, DestinationConfig, EmbeddingSettings, ModerationSettings
from destination_mistral.sinks.schema import CHUNKED_EMBEDDINGS, RESERVED_PREFIXES, Column, StreamPlan
from mistral_connection.errors import config_error

if TYPE_CHECKING:  # the protocol's dataclass, which destination_mistral.protocol.catalog reads a catalog into
    from airbyte_cdk.models import ConfiguredAirbyteStream

logger = logging.getLogger("airbyte")


def _types(prop: Mapping[str, Any]) -> list[str]:
    kind = prop.get("type")
    if isinstance(kind, str):
        kinds = [kind]
    elif isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str)]
    else:
        kinds = []
    for combinator in ("anyOf", "oneOf"):
        for option in prop.get(combinator) or []:
            if isinstance(option, Mapping):
                kinds += _types(option)
    return [k for k in dict.fromkeys(kinds) if k != "null"]


def sql_type(prop: Any) -> str:
    if not isinstance(prop, Mapping):
        return "JSON"
    kinds = _types(prop)
    if len(kinds) != 1:
        return "JSON" if kinds else "VARCHAR" if prop.get("format") else "JSON"
    kind = kinds[0]
    if kind == "string":
        fmt = prop.get("format")
        airbyte_type = prop.get("airbyte_type")
        if fmt == "date":
            return "DATE"
        if fmt == "date-time" and airbyte_type != "timestamp_without_timezone":
            return "TIMESTAMPTZ"
        if fmt == "date-time":
            return "TIMESTAMP"
        return "VARCHAR"
    if kind == "integer":
        return "BIGINT"
    if kind == "number":
        return "BIGINT" if prop.get("airbyte_type") == "integer" else "DOUBLE"
    if kind == "boolean":
        return "BOOLEAN"
    return "JSON"  # object, array


def columns_from_schema(json_schema: Mapping[str, Any] | None, stream_label: str) -> list[Column]:
    if json_schema is not None and not isinstance(json_schema, Mapping):
        raise config_error(f"Stream {stream_label!r}: its json_schema is not an object; the catalog is malformed.")
    properties = (json_schema or {}).get("properties") or {}
    if not isinstance(properties, Mapping):
        raise config_error(
            f"Stream {stream_label!r}: its json_schema `properties` is not an object; the catalog is malformed."
        )
    columns: list[Column] = []
    seen: set[str] = set()
    for name, prop in properties.items():
        lowered = name.lower()
        if lowered.startswith(RESERVED_PREFIXES):
            logger.warning(
                f"Stream {stream_label}: field {name!r} uses a reserved prefix (_airbyte_, _mistral_) and is not "
                "written as a column."
            )
            continue
        if lowered in seen:  # DuckDB column names are case-insensitive
            logger.warning(
                f"Stream {stream_label}: field {name!r} differs from another field only by case and is not "
                "written as a column."
            )
            continue
        seen.add(lowered)
        columns.append(Column(name, sql_type(prop)))
    return columns


def _sync_mode(configured: ConfiguredAirbyteStream) -> str:
    mode = configured.destination_sync_mode
    value = getattr(mode, "value", mode)
    if value in ("overwrite", "append", "append_dedup"):
        return value
    raise config_error(
        f"Stream {configured.stream.name!r} uses destination sync mode {value!r}, which destination-mistral does not "
        "support: choose overwrite, append or append_dedup."
    )


def _primary_key(configured: ConfiguredAirbyteStream, label: str, names: set[str]) -> list[str]:
    raw_key = configured.primary_key or configured.stream.source_defined_primary_key or []
    if not raw_key:
        raise config_error(
            f"Stream {label!r} uses append_dedup but has no primary key: set a primary key for it in the "
            "connection, or choose append or overwrite."
        )
    primary_key: list[str] = []
    for path in raw_key:
        if len(path) != 1:
            raise config_error(
                f"Stream {label!r}: primary key {'.'.join(path)!r} is nested; append_dedup needs top-level key fields."
            )
        if path[0] not in names:
            raise config_error(f"Stream {label!r}: primary key field {path[0]!r} is not in the stream's schema.")
        primary_key.append(path[0])
    return primary_key


def _cursor(configured: ConfiguredAirbyteStream, label: str, names: set[str]) -> str | None:
    """The cursor append_dedup compares: the connection's cursor field, else the source's default.
    A nested cursor is refused, as Airbyte's own destinations refuse it: a cursor the output cannot
    compare would let an old version of a record replace a newer one. A top-level one that is not a
    column (a reserved name, say) leaves the last record to arrive winning, and a warning says so,
    rather than failing a sync that ran before cursors were compared."""
    path = configured.cursor_field or configured.stream.default_cursor_field or []
    if not path:
        return None
    if len(path) > 1:
        raise config_error(
            f"Stream {label!r}: cursor {'.'.join(path)!r} is nested; append_dedup compares top-level cursor fields "
            "only. Choose a top-level cursor field for the stream in the connection, or use append."
        )
    if path[0] in names:
        return path[0]
    logger.warning(
        f"Stream {label}: cursor {path[0]!r} is not a top-level field of the stream's schema, so append_dedup "
        "keeps the last record to arrive for each primary key instead of the one with the newest cursor."
    )
    return None


def plan_stream(configured: ConfiguredAirbyteStream, config: DestinationConfig) -> StreamPlan:
    stream = configured.stream
    label = f"{stream.namespace}.{stream.name}" if stream.namespace else stream.name
    mode = _sync_mode(configured)
    columns = columns_from_schema(stream.json_schema, label)
    names = {c.name for c in columns}
    dedup = mode == "append_dedup"
    enrichment = config.enrichment_for(stream.name)
    plan = StreamPlan(
        name=stream.name,
        namespace=stream.namespace or None,
        sync_mode=mode,
        primary_key=_primary_key(configured, label, names) if dedup else [],
        columns=columns,
        enrichment_mode=enrichment.mode,
        sync_id=configured.sync_id,
        generation_id=getattr(configured, "generation_id", None),
        minimum_generation_id=getattr(configured, "minimum_generation_id", None),
        cursor_field=_cursor(configured, label, names) if dedup else None,
        record_key=tuple(
            path[0]
            for path in configured.primary_key or stream.source_defined_primary_key or []
            if path and path[0] in names
        ),
    )
    if isinstance(enrichment, ChatSettings):
        plan.answer_json = enrichment.response_format.is_json
    elif isinstance(enrichment, EmbeddingSettings):
        from destination_mistral.enrich.embeddings import KNOWN_DIMENSIONS

        plan.embedding_dim = enrichment.output_dimension or KNOWN_DIMENSIONS.get(enrichment.model)
        if enrichment.chunking is not None:
            plan.enrichment_mode = CHUNKED_EMBEDDINGS
            plan.chunk_fields = (*plan.record_key, *_chunk_fields(enrichment.chunking.metadata_fields, label, names))
    elif isinstance(enrichment, ModerationSettings):
        plan.moderation = enrichment
    return plan


def _chunk_fields(wanted: tuple[str, ...], label: str, names: set[str]) -> tuple[str, ...]:
    """The metadata fields each chunk's row carries: columns of the stream's table, copied from it."""
    missing = [name for name in wanted if name not in names]
    if missing:
        raise config_error(
            f"Stream {label!r}: `enrichment.chunking.metadata_fields` names {', '.join(map(repr, missing))}, which "
            "the stream's schema does not hold as a top-level field: name fields the stream has."
        )
    return tuple(dict.fromkeys(wanted))
