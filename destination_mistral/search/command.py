"""`destination-mistral search --config C --stream S "query"`: the k records of a stream nearest to
the query, read from the output the config names.

The order matters to what a mistake costs: the config, the stream's enrichment and its table are
checked before the query is embedded, so a wrong stream name is refused without a request. Not an
Airbyte protocol command: results go to stdout as a table or JSON, a failure to stderr as one plain
sentence (the config_error / transient_error wording of the other commands), with exit code 1."""

from __future__ import annotations

import argparse
import re
import shutil
import sys

from destination_mistral.protocol.describe import first_line
from destination_mistral.protocol.files import read_config
from destination_mistral.protocol.masking import mask, register_secrets
from destination_mistral.search import report
from destination_mistral.search.query import embed_query, embedding_settings, query_dimension
from destination_mistral.search.target import check_dimension
from destination_mistral.settings import OutputSettings, parse_config
from destination_mistral.settings.key_masking import config_secrets

PROG = "destination-mistral search"
DEFAULT_K = 10
DEFAULT_WIDTH = 100  # when stdout is not a terminal


def parse_search_args(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The records of a stream nearest to a query, by cosine similarity of their embeddings.",
    )
    parser.add_argument("query", help="the text to search for")
    parser.add_argument("--config", required=True, help="the destination's JSON configuration file")
    parser.add_argument("--stream", required=True, help="the stream (table) to search")
    parser.add_argument(
        "--namespace", help="the stream's namespace, where a sync wrote it under one (default: the output's schema)"
    )
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"how many hits (default {DEFAULT_K})")
    parser.add_argument("--json", action="store_true", help="print the hits as a JSON list instead of a table")
    parser.add_argument("--width", type=int, help="the table's width in characters (default: the terminal's, else 100)")
    parsed = parser.parse_args(args)
    for name in ("k", "width"):
        if getattr(parsed, name) is not None and getattr(parsed, name) < 1:
            parser.error(f"argument --{name}: must be 1 or more")
    return parsed


def open_output(output: OutputSettings, namespace: str | None):
    """The output's search, its database driver imported only for the output the config names."""
    if output.kind == "duckdb":
        from destination_mistral.search.duckdb_search import DuckDBSearch

        return DuckDBSearch(output, namespace)
    if output.kind == "postgres":
        from destination_mistral.search.postgres_search import PostgresSearch

        return PostgresSearch(output, namespace)
    from destination_mistral.search.jsonl_search import JsonlSearch

    return JsonlSearch(output, namespace)


def search(parsed: argparse.Namespace) -> str:
    raw = read_config(parsed.config)
    register_secrets(config_secrets(raw))
    config = parse_config(raw)
    settings = embedding_settings(config, parsed.stream)
    output = open_output(config.output, parsed.namespace)
    try:
        target = output.locate(parsed.stream)
        stored = output.dimension(target)
        check_dimension(target, stored, query_dimension(settings))  # before the request is paid for
        vector = embed_query(config, settings, parsed.query)
        check_dimension(target, stored, len(vector))
        hits = output.nearest(target, vector, parsed.k)
    finally:
        output.close()
    if parsed.json:
        return report.as_json(hits)
    width = parsed.width or shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return report.as_table(target, hits, settings, width)


def run_search_command(args: list[str]) -> None:
    parsed = parse_search_args(args)
    try:
        text = search(parsed)
    except Exception as error:  # every failure ends as one masked sentence, never a traceback
        print(f"{PROG}: {failure_text(error)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    print(mask(text), flush=True)


def failure_text(error: Exception) -> str:
    failure_type = getattr(error, "failure_type", None)
    message = getattr(error, "message", None)
    if failure_type is not None and message:
        return mask(f"{getattr(failure_type, 'value', failure_type)}: {without_sync_words(message)}")
    # Not one of ours (a bug, or a driver's error no branch above words): its type and first line.
    return mask(f"system_error: {type(error).__name__}: {first_line(error)}")


# The HTTP client words its failures for a sync ("The sync stops ...; the records before this one are
# committed."): a search has no sync and no records to commit, so those sentences are left out.
_SYNC_SENTENCES = re.compile(r"\s*The sync stops[^.]*?(?:; the records before this one are committed)?\.")


def without_sync_words(message: str) -> str:
    return _SYNC_SENTENCES.sub("", message).strip()
