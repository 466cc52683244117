"""The Sink protocol the sync layer drives and the item it hands over, and what the DuckDB and JSONL
sinks share: the enrichment fields of a result, the check that no two streams share a table or
file, the warning for records without a primary key value, and `StagingSink`, the bookkeeping of
streams this sync replaces through a staging copy."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from destination_mistral.enrich.results import Result
from destination_mistral.settings import OutputSettings
from destination_mistral.sinks.mode_values import mode_values
from destination_mistral.sinks.schema import (
    ANSWER,
    CACHED,
    CHUNK_INDEX,
    CHUNKS_SUFFIX,
    COMPLETION_TOKENS,
    EMBEDDING,
    ERROR,
    EXTRACTED_AT,
    MODE_COLUMNS,
    MODEL,
    PROMPT_TOKENS,
    RAW_ID,
    StreamPlan,
)
from mistral_connection.errors import config_error

if TYPE_CHECKING:  # the sync layer imports this module; pyarrow comes in only with a sink
    from destination_mistral.sinks.cache import ResultCache

logger = logging.getLogger("airbyte")

# How both sinks write a record's values as JSON: numpy values (vectors) as they are, and objects
# whose keys are not strings rather than a failed batch.
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass
class WriteItem:
    """One record on its way to the sink (`seq` keeps input order within the stream)."""

    seq: int
    record: Mapping[str, Any]
    emitted_at: int  # ms since the epoch
    raw_id: str
    result: Result | None
    # `_airbyte_meta.changes` made before the sink: the source's own, and the destination's (an
    # emitted_at no output can hold, a record stored as an error row).
    changes: list | None = None


# What a commit takes: each stream's records in order, and the answers paid for as (cache key, kind,
# result), which DuckDB stores in the same transaction.
Batches = Sequence[tuple[StreamPlan, list[WriteItem]]]
CacheEntries = Iterable[tuple[str, str, Result]]


def enrichment_fields(plan: StreamPlan, item: WriteItem) -> dict[str, Any]:
    """The enrichment columns of one record by name: the answer, the vector (as the result holds it)
    or the mode's columns (mode_values) when the result is usable, then the model, token counts,
    cache flag and error."""
    out: dict[str, Any] = {}
    if plan.enrichment_mode == "none":
        return out
    result = item.result or Result()
    value = result.value if result.ok else None
    if plan.enrichment_mode in MODE_COLUMNS:
        out.update(mode_values(plan, value))
    else:
        out[ANSWER if plan.enrichment_mode == "chat" else EMBEDDING] = value
    out[MODEL] = result.model
    out[PROMPT_TOKENS] = result.prompt_tokens
    out[COMPLETION_TOKENS] = result.completion_tokens
    out[CACHED] = result.cached
    out[ERROR] = result.error
    return out


# Names of the outputs' own tables and files: a stream of that name would overwrite them (or they it).
RESERVED_PREFIXES = ("_airbyte_tmp_", "_mistral_")


def check_distinct_locations(
    plans: Sequence[StreamPlan], locations: Callable[[StreamPlan], tuple[str, str]], what: str
) -> None:
    """Two streams written to one table or file would be merged, or crash the sync half way, and a
    stream named like one of the output's own tables would replace it: a config error names them
    before anything is written. `locations` gives a stream's table (or file) and that of its chunks,
    which belongs to the stream whether it is chunked or not: a stream no longer chunked has it
    removed, so another stream written there would lose its rows."""
    seen: dict[str, tuple[StreamPlan, bool]] = {}
    for plan in plans:
        if plan.name.lower().startswith(RESERVED_PREFIXES):
            raise config_error(
                f"Stream {plan.label!r} has a name destination-mistral keeps for its own tables and files (those "
                f"starting with {' or '.join(RESERVED_PREFIXES)}: staging copies, the cache, the generations): "
                "rename the stream in the connection, e.g. with a stream prefix."
            )
        for where, of_chunks in zip(locations(plan), (False, True), strict=True):
            if where not in seen:
                seen[where] = (plan, of_chunks)
                continue
            other, other_of_chunks = seen[where]
            if of_chunks or other_of_chunks:
                owner, writer = (plan, other) if of_chunks else (other, plan)
                raise config_error(
                    f"Stream {writer.label!r} would be written to {what} {where!r}, which holds the chunks of stream "
                    f"{owner.label!r} (`<stream>{CHUNKS_SUFFIX}`, removed when that stream is not chunked): rename "
                    "one of them in the connection, or give it another namespace."
                )
            raise config_error(
                f"Streams {other.label!r} and {plan.label!r} would both be written to {what} {where!r} (names are "
                "compared after normalisation and without case): rename one of them in the connection, or give it "
                "another namespace."
            )


def check_chunk_tables(
    plans: Sequence[StreamPlan], columns: Callable[[StreamPlan, bool, bool], Collection[str]], what: str
) -> None:
    """The same rule across syncs, for what earlier syncs wrote: a stream's table that holds chunks
    (a column no stream can have, since source fields starting with `_mistral_` are not written) is
    another stream's chunk table, and the table where a stream's chunks go, holding rows without
    chunks, is another stream's. Writing either would mix, replace or drop that stream's rows. The
    staging copies are held to it too: a stream's copy and the copy of another stream's chunks may
    share a name. `columns(plan, of_chunks, staging)` gives the column names of the stream's table,
    or of its chunk table, or of the staging copy of either; none when there is no such table."""
    for plan in plans:
        for staging in (False, True):
            if CHUNK_INDEX in columns(plan, False, staging):
                raise config_error(
                    f"Stream {plan.label!r} would be written to {what} {plan.name!r}"
                    f"{' (its staging copy)' if staging else ''}, which holds the chunks of another stream written "
                    "by an earlier sync: rename the stream in the connection, or give it another namespace."
                )
            held = columns(plan, True, staging)
            if held and CHUNK_INDEX not in held:
                raise config_error(
                    f"The chunks of stream {plan.label!r} go to {what} {plan.name + CHUNKS_SUFFIX!r}"
                    f"{' (its staging copy)' if staging else ''}, which holds the rows of another stream written by "
                    "an earlier sync: rename one of the streams in the connection, or give it another namespace."
                )


def extracted_at_iso(emitted_at: int) -> str:
    return dt.datetime.fromtimestamp(emitted_at / 1000.0, tz=dt.UTC).isoformat(timespec="milliseconds")


def warn_keyless(plan: StreamPlan, count: int) -> None:
    """append_dedup keeps a record without a value for its primary key as a row of its own (see the
    README); the log says how many there were, since they are never merged."""
    if count:
        logger.warning(
            f"{count} record(s) of stream {plan.label!r} have no value for primary key "
            f"{', '.join(plan.primary_key)}: each is kept as a row of its own, never merged."
        )


def report_collapse(plan: StreamPlan, removed: int) -> None:
    """The log line for the older versions of keys an append_dedup stream's table dropped at the
    start of a sync (its rows were written under another sync mode)."""
    if removed:
        logger.info(
            f"Stream {plan.label!r} is append_dedup: {removed} older version(s) of its keys, written under another "
            "sync mode, were removed so that one row per key remains."
        )


def attempt_known(plan: StreamPlan) -> bool:
    """Whether a later attempt of this sync can be told from a new sync: without a sync_id a replay
    looks like a new sync, so no sink records a swapped-in generation for it."""
    return plan.generation_id is not None and plan.sync_id is not None


class Sink(Protocol):
    def start(self, plans: Sequence[StreamPlan]) -> None: ...

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]: ...

    def commit(self, batches: Batches, cache_entries: CacheEntries, completes: Sequence[StreamPlan] = ()) -> None:
        """Stores the batches and the cache entries, then, for each stream in `completes` (whose
        COMPLETE status arrived and whose records are all in this commit or earlier ones), replaces
        what the stream held if this sync stages it. Atomic where the store allows."""

    def finish(self) -> None: ...

    def close(self) -> None: ...

    @property
    def location(self) -> str: ...


class StagingSink:
    """What both sinks do around a staged stream (an overwrite, or a truncate refresh): its rows go
    to a staging copy, which replaces the stream's table or file in the commit that brings the
    stream's COMPLETE status. How a copy is kept, and how the generation it holds is recorded, is
    the subclass's: `_swapped_in_earlier`, `_staging_resumable`, `_restart_staging`."""

    def __init__(self, output: OutputSettings, cache: ResultCache | None) -> None:
        self.output = output
        self.cache = cache
        self._swapped: set[tuple[str | None, str]] = set()  # staged streams already in place

    @property
    def location(self) -> str:
        return str(self.output.path)

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]:
        return self.cache.lookup(keys) if self.cache is not None else {}

    def finish(self) -> None:
        """Nothing is swapped at the end of the input: a staged stream whose COMPLETE never came keeps
        what it held, and its staging copy waits for the next attempt of its generation."""

    def stages(self, plan: StreamPlan) -> bool:
        """Whether the stream's rows go to its staging copy rather than to its table or file."""
        return plan.staged and plan.key not in self._swapped

    def _prepare_staging(self, plan: StreamPlan) -> None:
        if plan.staged and attempt_known(plan) and self._swapped_in_earlier(plan):
            # An earlier attempt of this sync (same sync_id and generation) already swapped its copy
            # in, and the platform replays from a STATE before that COMPLETE: what is in place is
            # this generation's, and the replayed records go into it.
            self._swapped.add(plan.key)
        if self.stages(plan) and not self._staging_resumable(plan):
            # A staging copy of another generation holds data of a sync the platform has given up
            # on; this one sends everything again.
            self._restart_staging(plan)

    def _pending_swaps(self, completes: Sequence[StreamPlan]) -> list[StreamPlan]:
        """The streams of `completes` whose staging copy is still to be swapped in, each once (a
        COMPLETE status may arrive twice)."""
        return list({plan.key: plan for plan in completes if self.stages(plan)}.values())

    @staticmethod
    def _pending_trims(completes: Sequence[StreamPlan]) -> list[StreamPlan]:
        """The streams of `completes` whose COMPLETE removes the generations below their
        minimum_generation_id from their table or file (those not replaced by a swap)."""
        return list({plan.key: plan for plan in completes if plan.drops_older_generations}.values())

    def _swapped_in_earlier(self, plan: StreamPlan) -> bool:
        raise NotImplementedError

    def _staging_resumable(self, plan: StreamPlan) -> bool:
        raise NotImplementedError

    def _restart_staging(self, plan: StreamPlan) -> None:
        raise NotImplementedError


__all__ = [
    "WriteItem",
    "Sink",
    "StagingSink",
    "JSON_OPTIONS",
    "enrichment_fields",
    "extracted_at_iso",
    "check_chunk_tables",
    "check_distinct_locations",
    "warn_keyless",
    "attempt_known",
    "RAW_ID",
    "EXTRACTED_AT",
]
