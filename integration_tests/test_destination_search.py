"""`destination-mistral search` as a user runs it (a real process) against outputs written through
the emulator: DuckDB, PostgreSQL with and without pgvector, JSON Lines, a stream's chunks table, the
JSON output, and the errors. The emulator's embeddings are deterministic, so a query equal to a
record's embedded text must find that record first. Every run is searched for the secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from destination_mistral.destination import DestinationMistral
from integration_tests.conftest import POSTGRES_WRITER, POSTGRES_WRITER_PASSWORD, admin_connection
from integration_tests.test_destination_postgres import query
from mistral_emulator import EmulatorServer, EmulatorSettings
from tests.support.builders import catalog, configured_stream, messages_with_states, review

BIN = Path(sys.executable).parent
API_KEY = "sk-search-SECRET-key-5521"
EMBED = {"mode": "embeddings", "fields": ["review"]}
RECORDS = 20
BROKEN = 99  # a record with nothing to embed: stored with its error and a NULL embedding
QUERY = review(7)["review"]  # the text record 7 was embedded as


@pytest.fixture(scope="module")
def api() -> Iterator[EmulatorServer]:
    """An emulator of this module's own, whose key is distinctive enough to be searched for."""
    with EmulatorServer(api_key=API_KEY, settings=EmulatorSettings(seed=7)) as server:
        yield server


def config_for(api: EmulatorServer, output: dict, enrichment: dict | None = None, **extra) -> dict:
    return {
        "api_key": api.api_key,
        "base_url": api.base_url,
        "model": "mistral-small-latest",
        "enrichment": enrichment or EMBED,
        "output": output,
        **extra,
    }


def write_reviews(config: dict, stream: str = "reviews") -> None:
    records = [review(i) for i in range(RECORDS)] + [review(BROKEN, text="", product=None)]
    configured = catalog(configured_stream(stream, mode="append_dedup"))
    list(DestinationMistral().write(config, configured, messages_with_states(records, stream=stream)))


def search(tmp_path: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "search-config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(BIN / "destination-mistral"), "search", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen = done.stdout + done.stderr
    assert API_KEY not in seen, "the API key leaked"
    assert POSTGRES_WRITER_PASSWORD not in seen, "the password leaked"
    return done


def hits_of(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def embedding_requests(api: EmulatorServer) -> int:
    return sum(api.stats()["routes"].get("POST /v1/embeddings", {}).values())


@pytest.fixture(scope="module")
def duckdb_config(api, tmp_path_factory) -> dict:
    config = config_for(api, {"type": "duckdb", "path": str(tmp_path_factory.mktemp("search") / "out.duckdb")})
    write_reviews(config)
    return config


def test_a_query_equal_to_a_records_text_finds_that_record_first_with_one_request(api, duckdb_config, tmp_path):
    api.reset_stats()
    hits = hits_of(search(tmp_path, duckdb_config, "--stream", "reviews", "--k", "5", "--json", QUERY))
    assert embedding_requests(api) == 1, "the query is embedded in one request"
    assert len(hits) == 5
    assert hits[0]["id"] == 7 and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all("_mistral_embedding" not in h for h in hits), "the JSON leaves the embedding out"
    assert hits[0]["tags"] == ["t", "1"], "JSON columns come back as JSON, not as their text"
    assert {"_airbyte_raw_id", "product", "review", "_mistral_model"} <= set(hits[0])


def test_rows_without_an_embedding_are_never_hits(duckdb_config, tmp_path):
    hits = hits_of(search(tmp_path, duckdb_config, "--stream", "reviews", "--k", "50", "--json", QUERY))
    assert sorted(h["id"] for h in hits) == list(range(RECORDS)), "the error row has no embedding and is skipped"
    con = duckdb.connect(duckdb_config["output"]["path"], read_only=True)
    try:
        stored = con.execute(f"SELECT _mistral_embedding IS NULL FROM reviews WHERE id = {BROKEN}").fetchone()
    finally:
        con.close()
    assert stored == (True,), "the test's error row is stored, without an embedding"


def test_the_table_shows_score_raw_id_and_the_embedded_text_cut_to_the_width(duckdb_config, tmp_path):
    done = search(tmp_path, duckdb_config, "--stream", "reviews", "--k", "3", "--width", "80", QUERY)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "3 nearest rows of stream 'reviews' in main.reviews:"
    assert lines[1].split() == ["score", "_airbyte_raw_id", "text"]
    assert lines[2].startswith("1.0000") and QUERY[:20] in lines[2]
    assert all(len(line) <= 80 for line in lines[1:]), lines
    long_text = search(tmp_path, duckdb_config, "--stream", "reviews", "--k", "1", "--width", "50", QUERY)
    assert long_text.stdout.splitlines()[2].endswith("…"), "a preview longer than the width is cut"


def add_chunks_duckdb(path: str) -> None:
    """The chunks table as the chunking sync writes it: chunk 0 of each review holds the review's own
    vector; chunk 1 of review i holds review i+1's, so the query finds two chunks, of two parents."""
    con = duckdb.connect(path)
    try:
        con.execute(
            "CREATE TABLE reviews_chunks AS "
            "SELECT _airbyte_raw_id, id, 0::INTEGER AS _mistral_chunk_index, review AS _mistral_chunk_text, "
            "12::INTEGER AS _mistral_chunk_tokens, _mistral_embedding FROM reviews "
            "UNION ALL SELECT a._airbyte_raw_id, a.id, 1, 'second part of ' || a.id, 5, b._mistral_embedding "
            "FROM reviews a JOIN reviews b ON b.id = a.id + 1 "
            "UNION ALL SELECT _airbyte_raw_id, id, 2, 'no vector', 2, NULL FROM reviews"
        )
    finally:
        con.close()


def test_a_chunks_table_beside_the_streams_is_searched_instead(api, tmp_path):
    config = config_for(api, {"type": "duckdb", "path": str(tmp_path / "chunked.duckdb")})
    write_reviews(config)
    add_chunks_duckdb(config["output"]["path"])
    hits = hits_of(search(tmp_path, config, "--stream", "reviews", "--k", "4", "--json", QUERY))
    assert {(h["id"], h["_mistral_chunk_index"]) for h in hits[:2]} == {(7, 0), (6, 1)}
    assert all(h["score"] == pytest.approx(1.0, abs=1e-4) for h in hits[:2])
    assert {h["_mistral_chunk_text"] for h in hits[:2]} == {QUERY, "second part of 6"}
    assert set(hits[0]) == {
        "score",
        "_airbyte_raw_id",
        "id",
        "_mistral_chunk_index",
        "_mistral_chunk_text",
        "_mistral_chunk_tokens",
    }
    assert all(h["_mistral_chunk_text"] != "no vector" for h in hits), "chunks without a vector are skipped"
    table = search(tmp_path, config, "--stream", "reviews", "--k", "2", QUERY)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "2 nearest chunks of stream 'reviews' in main.reviews_chunks:"
    assert lines[1].split() == ["score", "id", "chunk", "text"]
    assert {tuple(line.split()[1:3]) for line in lines[2:]} == {("7", "0"), ("6", "1")}


@pytest.mark.parametrize("postgres_database", [True, False], indirect=True, ids=["pgvector", "plain"])
def test_postgres_finds_the_same_record_with_pgvector_or_real_arrays(
    api, postgres_server, postgres_database, tmp_path, request
):
    vector = "pgvector" in request.node.callspec.id
    config = config_for(api, postgres_database)
    write_reviews(config)
    kind = query(
        postgres_database,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'reviews'::regclass AND attname = '_mistral_embedding'",
    )
    assert kind == [("vector(1024)" if vector else "real[]",)]
    hits = hits_of(search(tmp_path, config, "--stream", "reviews", "--k", "50", "--json", QUERY))
    assert hits[0]["id"] == 7 and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert sorted(h["id"] for h in hits) == list(range(RECORDS)), "the error row is skipped"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert "_mistral_embedding" not in hits[0] and hits[0]["tags"] == ["t", "1"]
    with admin_connection(postgres_server, postgres_database["database"]) as con:
        con.execute(
            "CREATE TABLE reviews_chunks AS SELECT _airbyte_raw_id, id, 0 AS _mistral_chunk_index, "
            "review AS _mistral_chunk_text, 12 AS _mistral_chunk_tokens, _mistral_embedding FROM reviews"
        )
        con.execute(f"ALTER TABLE reviews_chunks OWNER TO {POSTGRES_WRITER}")  # as the writer's own sync makes it
    chunks = hits_of(search(tmp_path, config, "--stream", "reviews", "--k", "1", "--json", QUERY))
    assert chunks[0]["id"] == 7 and chunks[0]["_mistral_chunk_text"] == QUERY
    unknown = search(tmp_path, config, "--stream", "review", QUERY)
    assert unknown.returncode == 1
    assert "Stream 'review' has no table in schema 'public'" in unknown.stderr
    assert "'reviews'" in unknown.stderr and "reviews_chunks" not in unknown.stderr


def test_jsonl_output_is_searched_by_reading_the_file_and_its_chunks_file(api, tmp_path):
    directory = tmp_path / "jsonl"
    config = config_for(api, {"type": "jsonl", "directory": str(directory)})
    write_reviews(config)
    hits = hits_of(search(tmp_path, config, "--stream", "reviews", "--k", "50", "--json", QUERY))
    assert hits[0]["id"] == 7 and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert sorted(h["id"] for h in hits) == list(range(RECORDS))
    assert "_mistral_embedding" not in hits[0]
    rows = [json.loads(line) for line in (directory / "reviews.jsonl").read_text().splitlines()]
    chunks = [
        {
            "_airbyte_raw_id": row["_airbyte_raw_id"],
            "id": row["id"],
            "_mistral_chunk_index": 0,
            "_mistral_chunk_text": row["review"],
            "_mistral_chunk_tokens": 12,
            "_mistral_embedding": row["_mistral_embedding"],
        }
        for row in rows
    ]
    (directory / "reviews_chunks.jsonl").write_text("".join(json.dumps(chunk) + "\n" for chunk in chunks))
    found = hits_of(search(tmp_path, config, "--stream", "reviews", "--k", "2", "--json", QUERY))
    assert found[0]["id"] == 7 and found[0]["_mistral_chunk_text"] == QUERY and len(found) == 2


def test_a_namespace_names_the_schema_the_stream_was_written_to(api, tmp_path):
    config = config_for(api, {"type": "duckdb", "path": str(tmp_path / "ns.duckdb")})
    records = [review(i) for i in range(RECORDS)]
    configured = catalog(configured_stream(namespace="shop"))
    list(DestinationMistral().write(config, configured, messages_with_states(records, namespace="shop")))
    hits = hits_of(search(tmp_path, config, "--stream", "reviews", "--namespace", "shop", "--k", "1", "--json", QUERY))
    assert hits[0]["id"] == 7
    default_schema = search(tmp_path, config, "--stream", "reviews", QUERY)
    assert default_schema.returncode == 1 and "has no table in schema 'main'" in default_schema.stderr


def test_a_duckdb_file_a_sync_holds_open_is_a_transient_error(duckdb_config, tmp_path):
    writer = duckdb.connect(duckdb_config["output"]["path"])  # as a running sync holds it
    try:
        done = search(tmp_path, duckdb_config, "--stream", "reviews", QUERY)
    finally:
        writer.close()
    assert done.returncode == 1
    assert done.stderr.startswith("destination-mistral search: transient_error: The DuckDB file"), done.stderr


def test_an_unknown_stream_is_named_with_the_streams_that_have_tables_before_any_request(api, duckdb_config, tmp_path):
    api.reset_stats()
    done = search(tmp_path, duckdb_config, "--stream", "reviewz", QUERY)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("destination-mistral search: config_error: Stream 'reviewz' has no table")
    assert "'reviews'" in done.stderr and "_mistral_" not in done.stderr, "the output's own tables are not streams"
    assert embedding_requests(api) == 0, "nothing is paid for a search that cannot run"


def test_a_stream_not_enriched_with_embeddings_is_refused(duckdb_config, tmp_path):
    chat = {"mode": "chat", "prompt_template": "{{ review }}"}
    config = {**duckdb_config, "stream_overrides": [{"stream_name": "reviews", "enrichment": chat}]}
    done = search(tmp_path, config, "--stream", "reviews", QUERY)
    assert done.returncode == 1
    assert "config_error: Stream 'reviews' is enriched with mode 'chat'" in done.stderr
    assert "stream_overrides[0].enrichment" in done.stderr


def test_a_query_of_another_size_than_the_stored_vectors_is_refused_before_any_request(api, duckdb_config, tmp_path):
    api.reset_stats()
    config = {**duckdb_config, "enrichment": {**EMBED, "model": "codestral-embed", "output_dimension": 256}}
    done = search(tmp_path, config, "--stream", "reviews", QUERY)
    assert done.returncode == 1
    assert "holds embeddings of 1024 dimensions, and the query's embedding has 256" in done.stderr
    assert embedding_requests(api) == 0


def test_a_refused_key_and_a_missing_file_are_config_errors_that_never_show_the_key(api, duckdb_config, tmp_path):
    wrong = {**duckdb_config, "api_key": API_KEY + "-wrong"}
    done = search(tmp_path, wrong, "--stream", "reviews", QUERY)
    assert done.returncode == 1 and "config_error: The Mistral API rejected the API key" in done.stderr, done.stderr
    missing = {**duckdb_config, "output": {"type": "duckdb", "path": str(tmp_path / "none.duckdb")}}
    done = search(tmp_path, missing, "--stream", "reviews", QUERY)
    assert done.returncode == 1 and "is not a DuckDB file" in done.stderr
    assert not (tmp_path / "none.duckdb").exists(), "a search creates nothing"


def test_the_api_down_is_a_transient_error(duckdb_config, tmp_path):
    down = {**duckdb_config, "base_url": "http://127.0.0.1:9", "limits": {"max_retries": 1, "max_retry_seconds": 2}}
    done = search(tmp_path, down, "--stream", "reviews", QUERY)
    assert done.returncode == 1 and done.stderr.startswith("destination-mistral search: transient_error:"), done.stderr
    assert "sync" not in done.stderr and "committed" not in done.stderr, "a search has no sync to speak of"
