"""What each stream's output looks like: the column names (Airbyte's metadata columns and the
enrichment columns, documented in the README), and a stream's plan; plans.py makes a plan from a
configured stream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from destination_mistral.settings import ModerationSettings

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
    # The catalog's primary key fields that are top-level columns, whatever the sync mode: what an
    # error row keeps to say which record it stands for, and what each chunk's row carries.
    record_key: tuple[str, ...] = ()
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
