"""Chunked embeddings end to end against the emulator: a long text becomes chunks of at most
`max_tokens` of the model's own tokenizer, each embedded, written to `<stream>_chunks` beside the
stream's table and kept in step with it under every sync mode: appended with their records,
replaced when append_dedup replaces a record, removed with it on a CDC delete, a generation's end or
a refresh, and kept when a sync fails before its stream completes. Every output that has tables:
DuckDB, PostgreSQL with pgvector and with real[]; JSON Lines (`<stream>_chunks.jsonl`).

The invariant checked after every sync (`assert_in_step`): the chunks are exactly those of the
records the stream holds, each record's `_mistral_chunk_count` of them, indexed from 0, with the
record's key and metadata."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import requests
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destination_mistral.destination import DestinationMistral
from destination_mistral.enrich.tokens import tokenizer_for
from integration_tests.conftest import make_postgres_database, writer_connection
from tests.support.builders import catalog, configured_stream, messages_with_states

MAX_TOKENS = 96
CHUNKING = {"max_tokens": MAX_TOKENS, "overlap_tokens": 16, "metadata_fields": ["product"]}
EMBED = {"mode": "embeddings", "fields": ["review"], "chunking": CHUNKING}
OUTPUTS = ["duckdb", "jsonl", "postgres-pgvector", "postgres-plain"]


def long_text(tag: str, parts: int = 4) -> str:
    return "\n\n".join(
        f"{tag} part {p}. " + " ".join(f"Sentence {p}-{i} says the {tag} battery lasts." for i in range(20))
        for p in range(parts)
    )


def review(i: int, text: str, rating: int = 1, **extra) -> dict:
    return {"id": i, "product": f"product {i}", "review": text, "rating": rating, **extra}


@pytest.fixture(params=OUTPUTS)
def output(request, tmp_path) -> dict:
    if request.param == "duckdb":
        return {"type": "duckdb", "path": str(tmp_path / "out.duckdb")}
    if request.param == "jsonl":
        return {"type": "jsonl", "directory": str(tmp_path / "jsonl")}
    server = request.getfixturevalue("postgres_server")
    return make_postgres_database(server, request.node.nodeid, request.param.endswith("pgvector"))


def sync(emulator, output, rows, mode="append", completed=True, cursor=None, enrichment=None, **stream):
    config = {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "enrichment": enrichment or EMBED,
        "output": output,
    }
    configured = configured_stream(mode=mode, **stream)
    configured.cursor_field = [cursor] if cursor else None
    messages = messages_with_states(rows, every=3, completed=completed)
    return list(DestinationMistral().write(config, catalog(configured), messages))


def tables(output) -> tuple[list[dict], list[dict]]:
    """The stream's rows and its chunk rows, as dicts without the vectors (each chunk's vector size
    instead)."""
    if output["type"] == "jsonl":
        directory = Path(output["directory"])

        def lines(name):
            path = directory / name
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        chunks = lines("reviews_chunks.jsonl")
        for chunk in chunks:
            vector = chunk.pop("_mistral_embedding")
            chunk["dims"] = len(vector) if vector is not None else None
        return lines("reviews.jsonl"), chunks
    dims = "len(_mistral_embedding)" if output["type"] == "duckdb" else "array_length(_mistral_embedding::real[], 1)"
    queries = (
        "SELECT id, review, _airbyte_raw_id, _mistral_chunk_count, _mistral_error FROM reviews",
        "SELECT _airbyte_raw_id, id, product, _mistral_chunk_index, _mistral_chunk_text, _mistral_chunk_tokens, "
        f"{dims} AS dims, _airbyte_generation_id FROM reviews_chunks",
    )
    if output["type"] == "duckdb":
        con = duckdb.connect(output["path"], read_only=True)
        try:
            if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'reviews'").fetchone()[0]:
                return [], []  # only a staging copy so far: an overwrite that has not completed
            return tuple(_dicts(con.execute(q)) for q in queries)
        finally:
            con.close()
    with writer_connection(output) as con:
        return tuple(_dicts(con.execute(q)) for q in queries)


def _dicts(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def assert_in_step(output) -> tuple[list[dict], list[dict]]:
    records, chunks = tables(output)
    by_raw_id = {r["_airbyte_raw_id"]: r for r in records}
    assert {c["_airbyte_raw_id"] for c in chunks} <= set(by_raw_id), "a chunk outlived its record"
    counts = Counter(c["_airbyte_raw_id"] for c in chunks)
    tokenizer = tokenizer_for("mistral-embed")
    for raw_id, record in by_raw_id.items():
        mine = sorted((c for c in chunks if c["_airbyte_raw_id"] == raw_id), key=lambda c: c["_mistral_chunk_index"])
        assert counts[raw_id] == (record["_mistral_chunk_count"] or 0), "the count is the number of chunk rows"
        assert [c["_mistral_chunk_index"] for c in mine] == list(range(len(mine)))
        for chunk in mine:
            assert chunk["id"] == record["id"] and chunk["product"] == f"product {record['id']}"
            assert chunk["_mistral_chunk_text"] in record["review"]
            assert chunk["_mistral_chunk_tokens"] == tokenizer.count(chunk["_mistral_chunk_text"]) <= MAX_TOKENS
            assert chunk["dims"] == 1024
    return records, chunks


def test_a_long_text_becomes_chunks_of_at_most_max_tokens_and_a_short_one_a_single_chunk(emulator, output):
    sync(emulator, output, [review(1, long_text("alpha")), review(2, "A short review.")])
    records, chunks = assert_in_step(output)
    counts = {r["id"]: r["_mistral_chunk_count"] for r in records}
    assert counts[1] > 4 and counts[2] == 1, counts
    first = min((c for c in chunks if c["id"] == 1), key=lambda c: c["_mistral_chunk_index"])
    assert first["_mistral_chunk_text"].startswith("alpha part 0."), "chunks follow the text's order"


def test_append_adds_chunks_with_their_records(emulator, output):
    sync(emulator, output, [review(1, long_text("alpha"))])
    sync(emulator, output, [review(1, long_text("beta")), review(2, long_text("gamma"))])
    records, chunks = assert_in_step(output)
    assert sorted(r["id"] for r in records) == [1, 1, 2], "append keeps both versions of record 1"


def test_append_dedup_replaces_the_chunks_of_an_updated_record_and_removes_those_of_a_deleted_one(emulator, output):
    dedup = {"mode": "append_dedup", "cursor": "rating"}
    sync(emulator, output, [review(1, long_text("alpha")), review(2, long_text("gamma")), review(3, "short")], **dedup)
    sync(
        emulator,
        output,
        [
            review(1, long_text("beta", parts=2), rating=2),  # newer: its chunks replace alpha's
            review(2, "stale", rating=0),  # older than the stored row: changes nothing
            review(3, "gone", rating=5, _ab_cdc_deleted_at="2024-01-01T00:00:00Z"),
        ],
        **dedup,
    )
    records, chunks = assert_in_step(output)
    assert sorted((r["id"], r["review"][:4]) for r in records) == [(1, "beta"), (2, "gamm")]
    assert not any("alpha" in c["_mistral_chunk_text"] for c in chunks), "no chunk of the replaced text is left"
    assert all(c["id"] != 3 for c in chunks), "a deleted record's chunks go with it"


def test_append_dedup_collapses_duplicates_and_their_chunks_within_one_batch(emulator, output):
    rows = [review(1, long_text("alpha"), rating=1), review(1, long_text("beta"), rating=2)]
    sync(emulator, output, rows, mode="append_dedup", cursor="rating")
    records, chunks = assert_in_step(output)
    assert [r["review"][:4] for r in records] == ["beta"]
    assert chunks and all("alpha" not in c["_mistral_chunk_text"] for c in chunks)


def test_overwrite_replaces_the_chunks_at_complete_and_a_failed_sync_keeps_the_old_ones(emulator, output):
    sync(emulator, output, [review(1, long_text("alpha")), review(2, long_text("gamma"))], mode="overwrite")
    sync(emulator, output, [review(3, long_text("beta"))], mode="overwrite", completed=False)
    records, chunks = assert_in_step(output)
    assert sorted(r["id"] for r in records) == [1, 2], "no COMPLETE: the old table and its chunks stay"
    # The platform's next attempt resumes after the last STATE released: record 3 was acknowledged.
    sync(emulator, output, [review(4, long_text("delta"))], mode="overwrite")
    records, chunks = assert_in_step(output)
    assert sorted(r["id"] for r in records) == [3, 4] and {c["id"] for c in chunks} == {3, 4}


def test_a_truncate_refresh_removes_the_old_generations_chunks_only_at_complete(emulator, output):
    def refresh(generation, rows, completed=True):
        sync(
            emulator,
            output,
            rows,
            mode="append_dedup",
            completed=completed,
            sync_id=generation,
            generation_id=generation,
            minimum_generation_id=generation,
        )

    refresh(1, [review(1, long_text("alpha")), review(2, "short")])
    refresh(2, [review(3, long_text("beta"))], completed=False)
    assert sorted(r["id"] for r in assert_in_step(output)[0]) == [1, 2]
    refresh(2, [review(3, long_text("beta"))])
    records, chunks = assert_in_step(output)
    assert [r["id"] for r in records] == [3] and {c["_airbyte_generation_id"] for c in chunks} == {2}


def test_a_second_sync_of_the_same_records_pays_nothing_and_writes_the_same_chunks(fresh_emulator, tmp_path):
    output = {"type": "duckdb", "path": str(tmp_path / "out.duckdb")}
    rows = [review(1, long_text("alpha")), review(2, long_text("gamma"))]
    sync(fresh_emulator, output, rows, mode="overwrite")
    first = tables(output)[1]
    paid = fresh_emulator.stats()["routes"]["POST /v1/embeddings"]
    sync(fresh_emulator, output, rows, mode="overwrite")
    second = tables(output)[1]
    assert fresh_emulator.stats()["routes"]["POST /v1/embeddings"] == paid, "answered by the cache"

    def texts(chunks):
        return sorted((c["id"], c["_mistral_chunk_index"], c["_mistral_chunk_text"]) for c in chunks)

    assert texts(first) == texts(second)


def test_chunk_vectors_are_the_embeddings_of_their_texts(emulator, tmp_path):
    """A chunk's vector is what the model gives for that chunk's text: the same as embedding the text
    as a record of its own (the emulator's embeddings are deterministic)."""
    chunked = {"type": "duckdb", "path": str(tmp_path / "chunked.duckdb")}
    sync(emulator, chunked, [review(1, long_text("alpha"))])
    con = duckdb.connect(chunked["path"], read_only=True)
    text, vector = con.execute(
        "SELECT _mistral_chunk_text, _mistral_embedding FROM reviews_chunks WHERE _mistral_chunk_index = 2"
    ).fetchone()
    con.close()
    whole = {"type": "duckdb", "path": str(tmp_path / "whole.duckdb")}
    sync(emulator, whole, [review(1, text)], enrichment={"mode": "embeddings", "fields": ["review"]})
    con = duckdb.connect(whole["path"], read_only=True)
    (expected,) = con.execute("SELECT _mistral_embedding FROM reviews").fetchone()
    con.close()
    assert vector == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("chunking", "field", "words"),
    [
        ({"max_tokens": 64, "overlap_tokens": 64}, "overlap_tokens", "must be less than"),
        ({"max_tokens": 8192}, "max_tokens", "over the model's input limit"),
        ({"metadata_fields": ["missing"]}, "metadata_fields", "does not hold"),
    ],
)
def test_a_chunking_mistake_is_a_config_error_naming_the_field(emulator, tmp_path, chunking, field, words):
    enrichment = {"mode": "embeddings", "fields": ["review"], "max_input_tokens": 4096, "chunking": chunking}
    output = {"type": "duckdb", "path": str(tmp_path / "out.duckdb")}
    with pytest.raises(AirbyteTracedException) as raised:
        sync(emulator, output, [review(1, "text")], enrichment=enrichment)
    assert raised.value.failure_type.value == "config_error"
    assert field in raised.value.message and words in raised.value.message, raised.value.message


@pytest.mark.parametrize("delivery", ["batch", "auto"])
def test_chunks_travel_by_the_batch_api_when_delivery_asks_and_store_the_same_rows(fresh_emulator, tmp_path, delivery):
    rows = [review(1, long_text("alpha")), review(2, "A short review.")]
    online = {"type": "duckdb", "path": str(tmp_path / "online.duckdb")}
    sync(fresh_emulator, online, rows)
    sent_online = fresh_emulator.stats()["routes"]["POST /v1/embeddings"]
    batched = {"type": "duckdb", "path": str(tmp_path / "batched.duckdb")}
    config = {
        "api_key": fresh_emulator.api_key,
        "base_url": fresh_emulator.base_url,
        "enrichment": EMBED,
        "output": batched,
        "cache": {"enabled": False},
        "delivery": {"mode": delivery, "poll_max_seconds": 0.2, "auto_threshold": 2},
    }
    list(DestinationMistral().write(config, catalog(configured_stream()), messages_with_states(rows)))
    _, chunks = assert_in_step(batched)

    def texts(chunks):
        return sorted((c["id"], c["_mistral_chunk_index"], c["_mistral_chunk_text"]) for c in chunks)

    assert texts(chunks) == texts(tables(online)[1])
    sent = fresh_emulator.stats()["routes"]["POST /v1/embeddings"]
    if delivery == "batch":
        assert sent == sent_online, "batch delivery sends no chunk online"
    jobs = requests.get(
        f"{fresh_emulator.base_url}/v1/batch/jobs",
        headers={"Authorization": f"Bearer {fresh_emulator.api_key}"},
        timeout=10,
    ).json()["data"]
    assert any(job["endpoint"] == "/v1/embeddings" for job in jobs), "the chunks went by a batch job"


def test_the_example_config_parses_to_the_chunking_it_shows():
    from destination_mistral.settings import ChunkingSettings, parse_config

    path = Path(__file__).parent / "configs" / "destination_embeddings_chunked.json"
    settings = parse_config(json.loads(path.read_text())).enrichment
    assert settings.chunking == ChunkingSettings(
        max_tokens=512, overlap_tokens=64, split_on="markdown", metadata_fields=("title", "url")
    )


# ---- the chunk invariant as a property ---------------------------------------------------------------

WORDS = ["battery", "screen", "lasts", "long", "short", "charger", "é", "東京", "!", "\n\n", "# Title\n"]
TEXTS = st.lists(st.sampled_from(WORDS), min_size=1, max_size=400).map(" ".join)
ROWS = st.lists(
    st.tuples(st.integers(0, 4), TEXTS, st.integers(0, 3), st.booleans()),  # key, text, cursor, a CDC delete
    min_size=1,
    max_size=6,
)
SYNCS = st.lists(
    st.tuples(ROWS, st.sampled_from(["append", "append_dedup", "overwrite"]), st.booleans()),  # rows, mode, COMPLETE
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize("kind", ["duckdb", "jsonl"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(syncs=SYNCS)
def test_any_sequence_of_syncs_keeps_the_chunks_in_step_with_the_records(emulator, tmp_path, kind, syncs):
    """Random syncs of records (updated, older, deleted, duplicated in a batch), in random sync modes,
    some failing before their COMPLETE: after each, the chunks are exactly those of the stored
    records, each within the bound and with its record's key."""
    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        output = (
            {"type": "duckdb", "path": f"{work}/out.duckdb"}
            if kind == "duckdb"
            else {"type": "jsonl", "directory": f"{work}/jsonl"}
        )
        for rows, mode, completed in syncs:
            records = [
                review(key, text, rating=cursor, **({"_ab_cdc_deleted_at": "2024-01-01"} if delete else {}))
                for key, text, cursor, delete in rows
            ]
            sync(emulator, output, records, mode=mode, completed=completed, cursor="rating")
            if Path(output.get("path", "")).exists() or Path(output.get("directory", "")).exists():
                assert_in_step(output)


def test_an_hnsw_index_covers_the_chunk_vectors_across_overwrites(emulator, postgres_server, request):
    output = {**make_postgres_database(postgres_server, request.node.nodeid, True), "hnsw_index": True}
    for tag in ("alpha", "beta", "gamma"):  # each overwrite swaps a staging copy, with its index, in
        sync(emulator, output, [review(1, long_text(tag))], mode="overwrite")
        assert_in_step(output)
    with writer_connection(output) as con:
        indexes = con.execute("SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE '%hnsw%'").fetchall()
    assert [table for table, _ in indexes] == ["reviews_chunks"], indexes


@pytest.mark.parametrize("mode", ["append_dedup", "overwrite"])
def test_a_stream_no_longer_chunked_keeps_no_chunks_and_an_unfinished_overwrite_keeps_the_old_ones(
    emulator, output, mode
):
    sync(emulator, output, [review(1, long_text("alpha"))], mode=mode, cursor="rating")
    plain = {"mode": "embeddings", "fields": ["review"]}
    if mode == "overwrite":  # without COMPLETE the old table stays, and its chunks with it
        sync(emulator, output, [review(2, "new")], mode=mode, completed=False, enrichment=plain)
        assert {c["id"] for c in tables(output)[1]} == {1}
    sync(
        emulator,
        output,
        [review(1, "updated", rating=2), review(2, "new")],
        mode=mode,
        enrichment=plain,
        cursor="rating",
    )
    assert chunk_rows(output) == 0, "no chunk outlives the chunked records"


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "not chunked"])
def test_a_stream_written_where_another_streams_chunks_go_is_a_config_error_and_keeps_its_rows(
    emulator, output, chunked
):
    """`<stream>_chunks` belongs to the stream: a stream of that name would be mixed with its chunks,
    replaced by them, or dropped with them when the stream is not chunked."""
    config = {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "enrichment": EMBED if chunked else {"mode": "none"},
        "output": output,
    }
    own = configured_stream("reviews_chunks", mode="append")
    rows = [{"id": 1, "review": "its own row"}]
    list(DestinationMistral().write(config, catalog(own), messages_with_states(rows, stream="reviews_chunks")))
    both = catalog(configured_stream(mode="append"), own)
    with pytest.raises(AirbyteTracedException) as caught:
        list(DestinationMistral().write(config, both, messages_with_states([review(1, long_text("alpha"))])))
    assert caught.value.failure_type.value == "config_error"
    assert "'reviews'" in caught.value.message and "'reviews_chunks'" in caught.value.message
    assert row_count(output, "reviews_chunks") == 1, "the other stream's table keeps its row"


@pytest.mark.parametrize(
    "first, then",
    [("other", "chunked"), ("other", "not chunked"), ("chunked", "append"), ("chunked", "overwrite")],
)
def test_a_stream_written_where_another_streams_chunks_went_in_an_earlier_sync_is_a_config_error(
    emulator, output, first, then
):
    """The same rule across syncs: `reviews_chunks` written by an earlier sync as a stream of its own
    is not taken for, nor dropped as, the chunks of a later `reviews`; and the chunk table of an
    earlier `reviews` is not written into by a later stream `reviews_chunks`."""

    def write(enrichment, stream, rows, mode="append"):
        config = {
            "api_key": emulator.api_key,
            "base_url": emulator.base_url,
            "enrichment": enrichment,
            "output": output,
        }
        messages = messages_with_states(rows, stream=stream)
        return list(DestinationMistral().write(config, catalog(configured_stream(stream, mode=mode)), messages))

    if first == "other":
        write({"mode": "none"}, "reviews_chunks", [{"id": 1, "review": "its own row"}])
        later = (EMBED if then == "chunked" else {"mode": "none"}, "reviews", [review(2, long_text("beta"))])
    else:
        write(EMBED, "reviews", [review(1, long_text("alpha"))])
        later = ({"mode": "none"}, "reviews_chunks", [{"id": 2, "review": "another stream's row"}], then)
    before = row_count(output, "reviews_chunks")
    with pytest.raises(AirbyteTracedException) as caught:
        write(*later)
    assert caught.value.failure_type.value == "config_error"
    assert "reviews" in caught.value.message and "earlier sync" in caught.value.message
    assert row_count(output, "reviews_chunks") == before > 0, "the earlier stream's rows are kept as they were"


def test_a_key_holding_a_nul_byte_still_merges_under_append_dedup(emulator, output):
    """PostgreSQL cannot store the NUL byte: a key stored as NULL would never merge with the record's
    other versions, so each sync would add a row and its chunks. The key is stored with U+FFFD in
    the NUL's place instead; the other outputs keep it as it is."""
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "product": {"type": "string"}, "review": {"type": "string"}},
    }
    rows = [review("k\x00nul", long_text("alpha")), review("plain", long_text("beta"))]
    for _ in range(2):
        sync(emulator, output, rows, mode="append_dedup", schema=schema)
    stored = row_count(output, "reviews")
    chunks = row_count(output, "reviews_chunks")
    assert stored == 2, f"one row per key after two syncs, not {stored}"
    sync(emulator, output, rows[1:], mode="append_dedup", schema=schema)
    assert row_count(output, "reviews_chunks") == chunks, "the chunks are those of the two records, once"


@pytest.mark.parametrize("staged_first", ["chunks", "other stream"])
def test_a_staging_copy_is_not_shared_with_another_streams_staged_chunks(emulator, output, staged_first):
    """An overwrite left without COMPLETE keeps its staging copy for the next attempt. The copy of
    stream `reviews_chunks` and the copy of `reviews`' chunks share a name: a later sync of the other
    stream is a config error, and the staged rows stay as they were."""

    def write(stream, chunked, mode, completed):
        config = {
            "api_key": emulator.api_key,
            "base_url": emulator.base_url,
            "enrichment": EMBED if chunked else {"mode": "none"},
            "output": output,
        }
        rows = [review(1, long_text("alpha"))] if chunked else [{"id": 1, "review": "its own row"}]
        messages = messages_with_states(rows, stream=stream, completed=completed)
        return list(DestinationMistral().write(config, catalog(configured_stream(stream, mode=mode)), messages))

    steps = [("reviews", True), ("reviews_chunks", False)]
    if staged_first == "other stream":
        steps.reverse()
    write(*steps[0], mode="overwrite", completed=False)
    before = staged_rows(output)
    with pytest.raises(AirbyteTracedException) as caught:
        write(*steps[1], mode="overwrite", completed=True)
    assert caught.value.failure_type.value == "config_error" and "earlier sync" in caught.value.message
    assert staged_rows(output) == before > 0, "the staged rows are kept as they were"


@pytest.mark.parametrize("kind", ["duckdb", "jsonl"])
@pytest.mark.parametrize("namespaces", [(None, None), ("Foo", "foo")], ids=["no namespace", "namespace case"])
def test_names_equal_without_case_are_one_table_across_syncs(emulator, tmp_path, kind, namespaces):
    output = (
        {"type": "duckdb", "path": str(tmp_path / "out.duckdb")}
        if kind == "duckdb"
        else {"type": "jsonl", "directory": str(tmp_path / "jsonl")}
    )
    config = {"api_key": emulator.api_key, "base_url": emulator.base_url, "output": output}
    first = messages_with_states([review(1, long_text("alpha"))], namespace=namespaces[0])
    list(
        DestinationMistral().write(
            {**config, "enrichment": EMBED}, catalog(configured_stream(namespace=namespaces[0])), first
        )
    )
    later = configured_stream("Reviews_Chunks", namespace=namespaces[1])
    messages = messages_with_states(
        [{"id": 2, "review": "another row"}], stream="Reviews_Chunks", namespace=namespaces[1]
    )
    with pytest.raises(AirbyteTracedException) as caught:
        list(DestinationMistral().write({**config, "enrichment": {"mode": "none"}}, catalog(later), messages))
    assert caught.value.failure_type.value == "config_error" and "earlier sync" in caught.value.message


def staged_rows(output) -> int:
    """The rows in the staging copy named `_airbyte_tmp_reviews_chunks` (`reviews_chunks.jsonl.staging`)."""
    if output["type"] == "jsonl":
        return jsonl_lines(output, "reviews_chunks.jsonl.staging")
    return row_count(output, "_airbyte_tmp_reviews_chunks")


def row_count(output, table: str) -> int:
    if output["type"] == "jsonl":
        return jsonl_lines(output, f"{table}.jsonl")
    return scalar(output, f"SELECT count(*) FROM {table}")


def jsonl_lines(output, name: str) -> int:
    path = Path(output["directory"]) / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def scalar(output, sql: str):
    """The one value `sql` selects in a table output."""
    if output["type"] == "duckdb":
        con = duckdb.connect(output["path"], read_only=True)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    with writer_connection(output) as con:
        return con.execute(sql).fetchone()[0]


def test_a_text_holding_a_nul_byte_keeps_its_record_and_chunks_and_names_what_the_output_cannot_hold(emulator, output):
    """PostgreSQL's text holds no NUL byte: the field and the chunks' texts are stored as NULL and
    named in the record's `_airbyte_meta.changes`, and the record keeps its chunks and their vectors
    (paid for), as a value that does not fit its column does. The other outputs keep the text."""
    text = long_text("alpha").replace("battery", "bat\x00tery")
    sync(emulator, output, [review(1, text)])
    records, chunks = tables(output)
    assert [(r["id"], r["_mistral_error"]) for r in records] == [(1, None)]
    assert len(chunks) == records[0]["_mistral_chunk_count"] > 1
    assert all(c["dims"] == 1024 and c["id"] == 1 and c["product"] == "product 1" for c in chunks)
    if output["type"] != "postgres":
        assert records[0]["review"] == text and all(c["_mistral_chunk_text"] in text for c in chunks)
        return
    assert records[0]["review"] is None and all(c["_mistral_chunk_text"] is None for c in chunks)
    with writer_connection(output) as con:
        [(meta,)] = con.execute("SELECT _airbyte_meta FROM reviews").fetchall()
    assert {c["field"] for c in meta["changes"]} == {"review", "_mistral_chunk_text"}, meta


def chunk_rows(output) -> int:
    """JSONL: the chunk file's lines; a table output: whether the chunk table exists."""
    if output["type"] == "jsonl":
        return jsonl_lines(output, "reviews_chunks.jsonl")
    return scalar(output, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'reviews_chunks'")


def test_a_small_chunk_size_without_an_overlap_takes_an_overlap_that_fits():
    from destination_mistral.settings import parse_config

    enrichment = {"mode": "embeddings", "fields": ["review"], "chunking": {"max_tokens": 32}}
    config = {"api_key": "k-123456", "enrichment": enrichment, "output": {"type": "jsonl", "directory": "/tmp/x"}}
    assert parse_config(config).enrichment.chunking.overlap_tokens == 4
