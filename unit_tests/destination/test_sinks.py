"""DuckDB and JSONL sinks: typed columns, overwrite swap, append_dedup upserts."""

import json

import duckdb
import numpy as np
import pytest

from destination_mistral.enrich.results import Result
from destination_mistral.settings import DestinationConfig, parse_config
from destination_mistral.sinks import WriteItem, open_sink
from destination_mistral.sinks.plans import plan_stream
from tests.support.builders import configured_stream, review


def config_for(tmp_path, kind="duckdb", enrichment=None) -> DestinationConfig:
    output = (
        {"type": "duckdb", "path": str(tmp_path / "out.duckdb")}
        if kind == "duckdb"
        else {"type": "jsonl", "directory": str(tmp_path / "jsonl")}
    )
    return parse_config(
        {
            "api_key": "k-123456",
            "base_url": "http://127.0.0.1:9",
            "output": output,
            "enrichment": enrichment or {"mode": "chat", "prompt_template": "{{ review }}"},
        }
    )


def items(rows, answer="ok"):
    return [
        WriteItem(
            seq=i,
            record=r,
            emitted_at=1_700_000_000_000,
            raw_id=f"raw-{i}",
            result=Result(
                value=answer if not callable(answer) else answer(r), model="m", prompt_tokens=3, completion_tokens=2
            ),
        )
        for i, r in enumerate(rows)
    ]


def sync(config, mode, batches, finish=True, generation=None, minimum_generation=None):
    """One sync into the sink; `finish=False` is a source that failed: its COMPLETE never comes."""
    plan = plan_stream(
        configured_stream(mode=mode, generation_id=generation, minimum_generation_id=minimum_generation), config
    )
    sink = open_sink(config.output, cache_enabled=True)
    try:
        sink.start([plan])
        for rows in batches:
            sink.commit([(plan, items(rows))], [])
        if finish:
            sink.commit([], [], [plan])
        sink.finish()
    finally:
        sink.close()


def table(tmp_path, query="SELECT id, review, _mistral_answer FROM reviews ORDER BY id"):
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_columns_are_typed_from_the_stream_schema(tmp_path):
    config = config_for(tmp_path)
    sync(config, "append", [[review(1)]])
    types = dict(
        table(tmp_path, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'reviews'")
    )
    assert types["id"] == "BIGINT" and types["rating"] == "BIGINT" and types["review"] == "VARCHAR"
    assert types["tags"] == "JSON", "nested values are stored as JSON"
    assert types["reviewed_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["_airbyte_generation_id"] == "BIGINT"
    for meta in (
        "_airbyte_raw_id",
        "_airbyte_extracted_at",
        "_airbyte_meta",
        "_mistral_answer",
        "_mistral_model",
        "_mistral_prompt_tokens",
        "_mistral_completion_tokens",
        "_mistral_cached",
        "_mistral_error",
    ):
        assert meta in types, f"missing column {meta}"


def test_overwrite_keeps_previous_data_on_failure(tmp_path):
    config = config_for(tmp_path)
    sync(config, "overwrite", [[review(1), review(2)]], generation=1, minimum_generation=1)
    assert [r[0] for r in table(tmp_path)] == [1, 2]
    sync(config, "overwrite", [[review(3)]], finish=False, generation=2, minimum_generation=2)  # the source dies
    assert [r[0] for r in table(tmp_path)] == [1, 2], "a failed overwrite must leave the previous data in place"
    sync(config, "overwrite", [[review(4)]], generation=3, minimum_generation=3)
    assert [r[0] for r in table(tmp_path)] == [4], "a successful overwrite replaces the table"


@pytest.mark.parametrize("kind", ["duckdb", "jsonl"])
def test_overwrite_resumed_with_same_generation_keeps_staged_rows(tmp_path, kind):
    config = config_for(tmp_path, kind=kind)
    sync(config, "overwrite", [[review(1)]], finish=False, generation=42, minimum_generation=42)
    sync(config, "overwrite", [[review(2)]], generation=42, minimum_generation=42)
    assert ids(tmp_path, kind) == [1, 2], "an attempt of the same generation resumes its staging table"


@pytest.mark.parametrize("kind", ["duckdb", "jsonl"])
def test_overwrite_without_generation_resumes_its_staging_too(tmp_path, kind):
    """An older platform sends neither sync_id nor generation_id: an interrupted overwrite's
    acknowledged rows must still reach the table on the next attempt."""
    config = config_for(tmp_path, kind=kind)
    sync(config, "overwrite", [[review(1), review(2)]])
    sync(config, "overwrite", [[review(3)]], finish=False)
    assert ids(tmp_path, kind) == [1, 2]
    sync(config, "overwrite", [[review(4)]])
    assert ids(tmp_path, kind) == [3, 4], "the rows committed by the interrupted attempt are kept"


@pytest.mark.parametrize("kind", ["duckdb", "jsonl"])
def test_a_new_generation_discards_the_staging_of_an_abandoned_one(tmp_path, kind):
    config = config_for(tmp_path, kind=kind)
    sync(config, "overwrite", [[review(1)]], finish=False, generation=1, minimum_generation=1)
    sync(config, "overwrite", [[review(2)]], generation=2, minimum_generation=2)
    assert ids(tmp_path, kind) == [2]


def ids(tmp_path, kind):
    if kind == "duckdb":
        return [r[0] for r in table(tmp_path, "SELECT id FROM reviews ORDER BY id")]
    return sorted(json.loads(line)["id"] for line in (tmp_path / "jsonl" / "reviews.jsonl").read_text().splitlines())


def test_append_dedup_upserts_by_primary_key(tmp_path):
    config = config_for(tmp_path)
    sync(config, "append_dedup", [[review(1, "a"), review(2, "b")], [review(2, "c"), review(3, "d"), review(3, "e")]])
    assert [(r[0], r[1]) for r in table(tmp_path)] == [(1, "a"), (2, "c"), (3, "e")], "the last record per key wins"
    sync(config, "append_dedup", [[review(1, "z")]])
    assert [(r[0], r[1]) for r in table(tmp_path)] == [(1, "z"), (2, "c"), (3, "e")]


def dedup_plan(tmp_path, cursor_field=None, default_cursor=None):
    configured = configured_stream(mode="append_dedup")
    configured.cursor_field = cursor_field
    configured.stream.default_cursor_field = default_cursor
    return plan_stream(configured, config_for(tmp_path))


def test_dedup_compares_the_connections_cursor_field_else_the_sources_default(tmp_path):
    assert dedup_plan(tmp_path, ["reviewed_at"], ["rating"]).cursor_field == "reviewed_at"
    assert dedup_plan(tmp_path, None, ["rating"]).cursor_field == "rating"
    assert dedup_plan(tmp_path).cursor_field is None, "no cursor: the last record to arrive wins"
    assert plan_stream(configured_stream(mode="append"), config_for(tmp_path)).cursor_field is None


def test_a_cursor_that_is_no_column_leaves_the_last_record_winning_and_says_so(tmp_path, caplog):
    assert dedup_plan(tmp_path, ["not_in_schema"]).cursor_field is None
    assert "keeps the last record to arrive" in caplog.text


def test_a_nested_cursor_is_a_config_error_naming_the_stream_and_the_fix(tmp_path):
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    with pytest.raises(AirbyteTracedException, match="cursor 'tags.0' is nested") as raised:
        dedup_plan(tmp_path, ["tags", "0"])
    assert raised.value.failure_type.value == "config_error"
    assert "top-level cursor field" in raised.value.message


@pytest.mark.parametrize(
    ("new", "held", "kind", "replaces"),
    [
        (None, None, "BIGINT", True),  # no cursors: the later record
        (3, None, "BIGINT", True),  # a null cursor is the oldest
        (None, 3, "BIGINT", False),
        ("3", 3, "BIGINT", True),  # equal once typed: the later record
        (2, "3", "BIGINT", False),
        (2.5, 3, "BIGINT", False),  # a fraction is no integer: a null cursor, older than 3
        ("2000-01-01T01:00:00+01:00", "2000-01-01T00:00:00Z", "TIMESTAMPTZ", True),  # the same moment
        ("2000-01-01T00:30:00+01:00", "2000-01-01T00:00:00Z", "TIMESTAMPTZ", False),
        ("2024-02-01", "2024-01-31", "DATE", True),
        ("b", "a", "VARCHAR", True),
    ],
)
def test_dedup_cursors_compare_as_values_of_their_column_type(new, held, kind, replaces):
    from destination_mistral.sinks.dedup import typed, wins

    def value(raw):
        try:
            return typed(raw, kind)
        except ValueError:
            return None

    assert wins(value(new), value(held)) is replaces


@pytest.mark.parametrize("kind", ["duckdb", "jsonl"])
def test_a_cdc_delete_removes_its_keys_row_in_dedup_and_is_a_row_in_append(tmp_path, kind):
    config = config_for(tmp_path, kind=kind)
    delete = {**review(1), "_ab_cdc_deleted_at": "2024-01-01T00:00:00Z"}
    sync(config, "append_dedup", [[review(1), review(2)], [delete]])
    assert ids(tmp_path, kind) == [2]
    sync(config, "append", [[delete]])
    assert ids(tmp_path, kind) == [1, 2], "append keeps a deletion record as a row, as Airbyte's outputs do"


def test_append_dedup_without_primary_key_is_a_config_error(tmp_path):
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    with pytest.raises(AirbyteTracedException, match="no primary key"):
        plan_stream(configured_stream(mode="append_dedup", primary_key=None), config_for(tmp_path))


def test_embeddings_are_fixed_size_arrays_usable_by_cosine_similarity(tmp_path):
    config = config_for(tmp_path, enrichment={"mode": "embeddings", "fields": ["review"]})
    plan = plan_stream(configured_stream(mode="append"), config)
    sink = open_sink(config.output, cache_enabled=False)
    vectors = [np.eye(1024, dtype=np.float32)[i] for i in range(2)]
    rows = [
        WriteItem(
            seq=i, record=review(i), emitted_at=0, raw_id=str(i), result=Result(value=vectors[i], model="mistral-embed")
        )
        for i in range(2)
    ]
    sink.start([plan])
    sink.commit([(plan, rows)], [])
    sink.close()
    result = table(
        tmp_path,
        "SELECT typeof(_mistral_embedding), array_cosine_similarity(_mistral_embedding, "
        "(SELECT _mistral_embedding FROM reviews WHERE id = 0)) FROM reviews ORDER BY id",
    )
    assert result[0][0] == "FLOAT[1024]"
    assert [round(r[1], 3) for r in result] == [1.0, 0.0]


def test_jsonl_overwrite_and_dedup(tmp_path):
    config = config_for(tmp_path, kind="jsonl")
    path = tmp_path / "jsonl" / "reviews.jsonl"
    sync(config, "overwrite", [[review(1), review(2)]], generation=1, minimum_generation=1)
    sync(config, "overwrite", [[review(3)]], finish=False, generation=2, minimum_generation=2)
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [1, 2], (
        "failed overwrite keeps the old file"
    )
    sync(config, "append_dedup", [[review(2, "new"), review(5)]])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    # The failed overwrite's row 3 was acknowledged by its STATE: a sync that is no refresh takes it in.
    assert [(row["id"], row["review"]) for row in lines] == [
        (1, lines[0]["review"]),
        (3, lines[1]["review"]),
        (2, "new"),
        (5, lines[3]["review"]),
    ]
    assert lines[2]["_mistral_answer"] == "ok" and lines[2]["_airbyte_raw_id"]


def test_cache_written_with_blob_vectors_is_migrated_without_losing_answers(tmp_path):
    from destination_mistral.sinks.cache import TABLE, ResultCache

    path = tmp_path / "old.duckdb"
    vector = np.arange(8, dtype="<f4")
    con = duckdb.connect(str(path))
    con.execute(
        f"CREATE TABLE {TABLE} (key VARCHAR PRIMARY KEY, endpoint VARCHAR, model VARCHAR, answer VARCHAR, vector BLOB, "
        "prompt_tokens INTEGER, completion_tokens INTEGER, created_at TIMESTAMPTZ DEFAULT current_timestamp)"
    )
    con.execute(
        f"INSERT INTO {TABLE} VALUES ('e', 'embeddings', 'mistral-embed', NULL, ?, 3, 0, DEFAULT), "
        "('c', 'chat/completions', 'm', '\"yes\"', NULL, 5, 1, DEFAULT)",
        [vector.tobytes()],
    )
    cache = ResultCache(con)
    found = cache.lookup(["e", "c", "missing"])
    assert set(found) == {"e", "c"}, "every cached answer survives the upgrade"
    assert np.array_equal(found["e"].value, vector) and found["e"].prompt_tokens == 3
    assert found["c"].value == "yes"
    kind = con.execute(
        f"SELECT data_type FROM information_schema.columns WHERE table_name = '{TABLE}' AND column_name = 'vector'"
    ).fetchall()
    assert kind == [("FLOAT[]",)]
    cache.store([("e2", "embeddings", Result(value=vector * 2, model="mistral-embed", prompt_tokens=1))])
    assert np.array_equal(cache.lookup(["e2"])["e2"].value, vector * 2), "the migrated table takes new rows"
    con.close()


def _chunked(name: str, texts: list[str], dim: int = 16) -> Result:
    """A record's chunked answer as the enricher gives it: each chunk's cache key and vector."""
    vectors = [np.random.default_rng(abs(hash(text)) % 2**32).standard_normal(dim).astype(np.float32) for text in texts]
    chunks = [
        {"index": i, "text": text, "tokens": 2, "key": f"chunk:{text}", "vector": vector}
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    ]
    return Result(value=chunks, model="mistral-embed", prompt_tokens=2 * len(texts))


def _as_paid(key: str, result: Result) -> list:
    """The cache entries a sync gives for a chunked record: each chunk's answer as it arrived, and
    the record's row."""
    chunks = [
        (c["key"], "embeddings", Result(value=c["vector"], model=result.model, prompt_tokens=c["tokens"]))
        for c in result.value
    ]
    return [*chunks, (key, "embeddings/chunks", result)]


def test_cached_chunks_are_embedding_rows_of_their_own_shared_by_records_and_read_back_the_same(tmp_path):
    """A record's row lists its chunks' keys; each chunk's vector is the embedding row of its text,
    which records sharing the chunk share. A record whose chunk row is gone is asked again."""
    from destination_mistral.sinks.cache import TABLE, ResultCache

    con = duckdb.connect(str(tmp_path / "cache.duckdb"))
    cache = ResultCache(con)
    first, second = _chunked("a", ["one", "two", "three"]), _chunked("b", ["two", "four"])
    cache.store(_as_paid("a", first))
    cache.store([entry for entry in _as_paid("b", second) if entry[0] != "chunk:two"])  # already answered
    stored = dict(con.execute(f"SELECT key, vector IS NULL FROM {TABLE}").fetchall())
    assert stored == {
        "a": True,
        "b": True,
        "chunk:one": False,
        "chunk:two": False,
        "chunk:three": False,
        "chunk:four": False,
    }
    found = cache.lookup(["a", "b"])
    for key, result in (("a", first), ("b", second)):
        assert [c["index"] for c in found[key].value] == [c["index"] for c in result.value]
        for read, wrote in zip(found[key].value, result.value, strict=True):
            assert np.array_equal(read["vector"], wrote["vector"])
    con.execute(f"DELETE FROM {TABLE} WHERE key = 'chunk:four'")
    assert set(cache.lookup(["a", "b"])) == {"a"}, "a record missing a chunk's vector is paid again, never cut short"
    con.close()


def test_a_lookup_of_many_cached_records_with_many_chunks_fits_the_output_memory(tmp_path):
    """1,000 cached records of 17 chunks (70 MB of vectors) looked up with a quarter of the output's
    buffer pool (the rest holds what the sync writes meanwhile): kept as one list per record, they
    were read all at once by any lookup, which ran out of memory, and every later sync with it."""
    from destination_mistral.sinks.cache import ResultCache

    con = duckdb.connect(str(tmp_path / "cache.duckdb"))
    con.execute("SET memory_limit = '48MB'")
    cache = ResultCache(con)
    rng = np.random.default_rng(5)
    keys = [f"record {r}" for r in range(1_000)]
    for batch in range(0, len(keys), 100):
        entries = []
        for key in keys[batch : batch + 100]:
            chunks = [
                {
                    "index": i,
                    "text": "",
                    "tokens": 1,
                    "key": f"{key} chunk {i}",
                    "vector": rng.standard_normal(1024).astype(np.float32),
                }
                for i in range(17)
            ]
            entries += _as_paid(key, Result(value=chunks, model="mistral-embed", prompt_tokens=17))
        con.begin()
        cache.store(entries)
        con.commit()
    found = cache.lookup(keys)
    assert len(found) == 1_000 and all(len(result.value) == 17 for result in found.values())
    con.close()
