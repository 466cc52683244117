"""What the three outputs' searches share: the table (or file) a stream's search reads, its hits,
and the errors that name a stream, a table or a vector size."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from destination_mistral.sinks import base, schema
from mistral_connection.errors import config_error

# The table of a stream's chunks sits beside the stream's own, named after it with this suffix; when
# it exists the chunks are searched instead of the whole rows.
CHUNKS_SUFFIX = "_chunks"
CHUNK_INDEX = "_mistral_chunk_index"
CHUNK_TEXT = "_mistral_chunk_text"
CHUNK_TOKENS = "_mistral_chunk_tokens"
# The similarity's column in the queries: a name no stream column can have (the `_mistral_` prefix is
# reserved), so that a record field called `score` is returned as it is.
SCORE = "_mistral_search_score"


@dataclass(frozen=True)
class Target:
    """The table or file a search reads: the stream's own, or its chunks'."""

    stream: str
    table: str  # the table's name in its schema, or the file's path
    label: str  # the table (schema.table) or the file, as messages name it
    chunks: bool
    # The columns and their types as the output reports them (empty for a JSON Lines file).
    columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    score: float
    row: dict[str, Any]  # the row's columns, without the embedding


def is_stream_table(name: str) -> bool:
    """Not one of the output's own tables or files (staging copies, the cache, generations)."""
    return not name.lower().startswith(base.RESERVED_PREFIXES)


def stream_names(names: Iterable[str]) -> list[str]:
    """The streams among the tables (or files) of a schema (or directory): without the output's own,
    and without a stream's chunks table when the stream's own is there."""
    tables = {name for name in names if is_stream_table(name)}
    return sorted(
        name for name in tables if not (name.endswith(CHUNKS_SUFFIX) and name.removesuffix(CHUNKS_SUFFIX) in tables)
    )


def unknown_stream(stream: str, where: str, streams: list[str]) -> Exception:
    listed = ", ".join(repr(name) for name in streams) if streams else "none"
    return config_error(
        f"Stream {stream!r} has no table in {where}: the streams that have one there are {listed}. Give --stream one "
        "of them (and --namespace when a sync wrote it under its namespace), or write the stream first."
    )


def no_embeddings(target: Target) -> Exception:
    return config_error(
        f"{target.label} has no `{schema.EMBEDDING}` column: stream {target.stream!r} was written without "
        "embeddings, so there is nothing to search. Run a sync with the embeddings enrichment first."
    )


def check_dimension(target: Target, stored: int | None, query: int | None) -> None:
    """A query is comparable only with vectors of its own size (the same model and output_dimension).
    None: a size not known yet, checked once it is."""
    if stored is not None and query is not None and stored != query:
        raise config_error(
            f"{target.label} holds embeddings of {stored} dimensions, and the query's embedding has {query}: the "
            f"stream's embedding settings (model, output_dimension) are not the ones it was written with. Search "
            "with the config the stream was synced with."
        )


def parent_key(row: dict[str, Any]) -> dict[str, Any]:
    """A chunk's parent key: the columns of a chunks table other than the metadata and chunk columns."""
    return {name: value for name, value in row.items() if not name.lower().startswith(schema.RESERVED_PREFIXES)}
