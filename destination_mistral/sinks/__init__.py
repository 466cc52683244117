"""Where enriched records land. Both sinks are driven from the destination's single database
thread: `start` once, `commit` per batch (atomically where the store allows), `finish` at the end
of a successful sync (the overwrite swap), `close` always."""

from __future__ import annotations

from destination_mistral.config import OutputSettings
from destination_mistral.sinks.base import Sink, WriteItem


def open_sink(output: OutputSettings, cache_enabled: bool) -> Sink:
    if output.kind == "duckdb":
        from destination_mistral.sinks.duckdb_sink import DuckDBSink

        return DuckDBSink(output, cache_enabled)
    from destination_mistral.sinks.jsonl_sink import JsonlSink

    return JsonlSink(output, cache_enabled)


def check_writable(output: OutputSettings) -> None:
    """Raises a config error when the output location cannot be written."""
    if output.kind == "duckdb":
        from destination_mistral.sinks.duckdb_sink import check_writable as check
    else:
        from destination_mistral.sinks.jsonl_sink import check_writable as check
    check(output)


__all__ = ["Sink", "WriteItem", "open_sink", "check_writable"]
