"""Where enriched records land. Both sinks are driven from the destination's single database
thread: `start` once, `commit` per batch (atomically where the store allows), `finish` at the end
of a successful sync (the overwrite swap), `close` always.

After a crash the platform replays the input from the last STATE the destination emitted. A STATE
leaves only once every record before it is committed, but a commit also takes the finished records
after it, so some committed rows are sent again:
- append_dedup upserts by primary key: every record exactly once.
- overwrite writes to a staging table swapped in at the end: the previous table stays whole until
  the new sync completes; a resumed attempt (same sync_id) keeps its staging rows, so like append it
  may hold a replayed row twice.
- append never touches rows already written and cannot tell a replayed record from a new one with
  the same content, so rows committed after the last STATE can appear twice (at least once, never
  lost). The second copy costs no API call: the cache, committed with the rows, answers it. Choose
  append_dedup when duplicates matter.
(integration_tests/test_destination_crash.py kills a sync at several points to hold these.)"""

from __future__ import annotations

from destination_mistral.settings import OutputSettings
from destination_mistral.sinks.base import Sink, WriteItem


def open_sink(output: OutputSettings, cache_enabled: bool) -> Sink:
    if output.kind == "postgres":
        from destination_mistral.sinks.postgres_sink import PostgresSink

        return PostgresSink(output, cache_enabled)
    from destination_mistral.sinks.duckdb_connection import opening

    # The DuckDB file, the MotherDuck database or the JSONL output's cache is opened with this
    # output's storage version and token.
    with opening(output):
        if output.kind == "duckdb":
            from destination_mistral.sinks.duckdb_sink import DuckDBSink

            return DuckDBSink(output, cache_enabled)
        from destination_mistral.sinks.jsonl_sink import JsonlSink

        return JsonlSink(output, cache_enabled)


def check_writable(output: OutputSettings) -> None:
    """Raises a config error when the output location cannot be written."""
    if output.kind == "postgres":
        from destination_mistral.sinks.postgres_connection import check_writable as check
    elif output.kind == "duckdb":
        from destination_mistral.sinks.duckdb_connection import check_writable as check
    else:
        from destination_mistral.sinks.jsonl_sink import check_writable as check
    check(output)


__all__ = ["Sink", "WriteItem", "open_sink", "check_writable"]
