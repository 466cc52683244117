"""What each stream's output looks like: typed columns from the stream's JSON schema, Airbyte's
metadata columns, and the enrichment columns (documented in the README)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from destination_mistral.settings import ChatSettings, DestinationConfig, EmbeddingSettings, ModerationSettings
from mistral_connection.errors import config_error

if TYPE_CHECKING:  # the protocol's dataclass, which destination_mistral.protocol.catalog reads a catalog into
    from airbyte_cdk.models import ConfiguredAirbyteStream

logger = logging.getLogger("airbyte")

RAW_ID = "_airbyte_raw_id"
EXTRACTED_AT = "_airbyte_extracted_at"
# Airbyte's per-record metadata: the sync that wrote the row, and its changes (the source's own, and
# the fields that did not fit their column type and were stored as NULL).
META = "_airbyte_meta"
# Which generation of the stream a row belongs to (the configured stream's generation_id): a truncate
# refresh keeps only its own generation, and a minimum_generation_id drops the generations below it.
GENERATION_ID = "_airbyte_generation_id"
# A record of an append_dedup stream whose field holds a value here is a CDC delete (the sources
# built on Debezium send them): the row of its key is removed, and the record is not stored.
CDC_DELETED_AT = "_ab_cdc_deleted_at"
ANSWER = "_mistral_answer"
EMBEDDING = "_mistral_embedding"
MODEL = "_mistral_model"
PROMPT_TOKENS = "_mistral_prompt_tokens"
COMPLETION_TOKENS = "_mistral_completion_tokens"
CACHED = "_mistral_cached"
ERROR = "_mistral_error"
# moderation: the score per category (JSON object), whether any is over its threshold, and which.
MODERATION_SCORES = "_mistral_moderation_scores"
FLAGGED = "_mistral_flagged"
FLAGGED_CATEGORIES = "_mistral_flagged_categories"
# classification: {target: {"scores": {label: score}, "label": the top label}}.
CLASSIFICATION = "_mistral_classification"
# ocr: the pages' markdown joined, each page's markdown (JSON list), and the API's usage.
OCR_MARKDOWN = "_mistral_ocr_markdown"
OCR_PAGES = "_mistral_ocr_pages"
OCR_PAGE_COUNT = "_mistral_ocr_page_count"
OCR_PAGES_PROCESSED = "_mistral_ocr_pages_processed"
OCR_DOC_SIZE_BYTES = "_mistral_ocr_doc_size_bytes"
# chunked embeddings: the stream's table counts each record's chunks; the chunks and their vectors
# are rows of the child table `<table>_chunks` (sinks/chunks.py).
CHUNK_COUNT = "_mistral_chunk_count"
CHUNK_INDEX = "_mistral_chunk_index"
CHUNK_TEXT = "_mistral_chunk_text"
CHUNK_TOKENS = "_mistral_chunk_tokens"
CHUNKS_SUFFIX = "_chunks"
# The plan's mode for an embeddings enrichment with `chunking`.
CHUNKED_EMBEDDINGS = "chunked_embeddings"
RESERVED_PREFIXES = ("_airbyte_", "_mistral_")


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # VARCHAR | BIGINT | DOUBLE | BOOLEAN | DATE | TIMESTAMPTZ | JSON


# The result columns of the modes whose answer is several values (chat's is one answer, embeddings'
# one vector), before the columns every mode shares.
MODE_COLUMNS = {
    "moderation": (Column(MODERATION_SCORES, "JSON"), Column(FLAGGED, "BOOLEAN"), Column(FLAGGED_CATEGORIES, "JSON")),
    "classification": (Column(CLASSIFICATION, "JSON"),),
    CHUNKED_EMBEDDINGS: (Column(CHUNK_COUNT, "INTEGER"),),
    "ocr": (
        Column(OCR_MARKDOWN, "VARCHAR"),
        Column(OCR_PAGES, "JSON"),
        Column(OCR_PAGE_COUNT, "INTEGER"),
        Column(OCR_PAGES_PROCESSED, "INTEGER"),
        Column(OCR_DOC_SIZE_BYTES, "BIGINT"),
    ),
}


@dataclass
class StreamPlan:
    name: str
    namespace: str | None
    sync_mode: str  # overwrite | append | append_dedup
    primary_key: list[str]
    columns: list[Column]
    enrichment_mode: str  # chat | embeddings | chunked_embeddings | moderation | classification | ocr | none
    answer_json: bool = False
    embedding_dim: int | None = None
    # moderation: the thresholds the flags are computed with when rows are written.
    moderation: ModerationSettings | None = None
    sync_id: int | None = None
    generation_id: int | None = None
    minimum_generation_id: int | None = None
    # append_dedup: the top-level field whose value decides which record of a key is kept (None: the
    # last to arrive), from the catalog's cursor_field.
    cursor_field: str | None = None
    # chunked_embeddings: the record's top-level fields copied onto each chunk's row: its primary key
    # (whatever the sync mode) and the chunking's metadata fields.
    chunk_fields: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chunked(self) -> bool:
        return self.enrichment_mode == CHUNKED_EMBEDDINGS

    @property
    def staged(self) -> bool:
        """Whether this sync replaces what the stream held: an overwrite, or a truncate refresh in any
        mode (the platform asks for it with minimum_generation_id = generation_id > 0). Such a
        stream writes to a staging table, and replaces the old one only when the stream's COMPLETE
        status arrives, so a failed source never leaves a stream emptied or half-written."""
        if self.sync_mode == "overwrite":
            return True
        return bool(self.generation_id) and self.minimum_generation_id == self.generation_id

    @property
    def drops_older_generations(self) -> bool:
        """Whether the stream's COMPLETE removes the rows of generations below minimum_generation_id
        (rows written before generations were recorded count as the oldest). A truncate refresh
        does it by its swap; this is the rest: a minimum above 0 but below generation_id."""
        return bool(self.minimum_generation_id) and not self.staged

    def deletes(self, record: Mapping[str, Any]) -> bool:
        """Whether the record is a CDC delete: append_dedup removes the row of its key instead of
        storing it (append and overwrite keep deletion records as rows, as Airbyte's do)."""
        return self.sync_mode == "append_dedup" and record.get(CDC_DELETED_AT) is not None

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.namespace, self.name)

    @property
    def label(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @property
    def result_column(self) -> str | None:
        """The first column the stream's enrichment writes (after Airbyte's four): the one a record's
        TRUNCATED change names when its input was cut to the model's limit."""
        return self.meta_columns()[4].name if self.enrichment_mode != "none" else None

    def meta_columns(self) -> list[Column]:
        columns = [
            Column(RAW_ID, "VARCHAR"),
            Column(EXTRACTED_AT, "TIMESTAMPTZ"),
            Column(META, "JSON"),
            Column(GENERATION_ID, "BIGINT"),
        ]
        if self.enrichment_mode == "chat":
            columns.append(Column(ANSWER, "JSON" if self.answer_json else "VARCHAR"))
        elif self.enrichment_mode == "embeddings":
            columns.append(Column(EMBEDDING, f"FLOAT[{self.embedding_dim}]" if self.embedding_dim else "FLOAT[]"))
        else:
            columns += MODE_COLUMNS.get(self.enrichment_mode, ())
        if self.enrichment_mode != "none":
            columns += [
                Column(MODEL, "VARCHAR"),
                Column(PROMPT_TOKENS, "INTEGER"),
                Column(COMPLETION_TOKENS, "INTEGER"),
                Column(CACHED, "BOOLEAN"),
                Column(ERROR, "VARCHAR"),
            ]
        return columns

    def all_columns(self) -> list[Column]:
        return self.columns + self.meta_columns()


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
    )
    if isinstance(enrichment, ChatSettings):
        plan.answer_json = enrichment.response_format.is_json
    elif isinstance(enrichment, EmbeddingSettings):
        from destination_mistral.enrich.embeddings import KNOWN_DIMENSIONS

        plan.embedding_dim = enrichment.output_dimension or KNOWN_DIMENSIONS.get(enrichment.model)
        if enrichment.chunking is not None:
            plan.enrichment_mode = CHUNKED_EMBEDDINGS
            keys = [path[0] for path in configured.primary_key or stream.source_defined_primary_key or []]
            keys = [key for key in keys if key in names]  # the record's key, when it has one of columns
            plan.chunk_fields = (*keys, *_chunk_fields(enrichment.chunking.metadata_fields, label, names))
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
