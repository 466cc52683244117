"""The PostgreSQL output, end to end through `destination-mistral write` (a real process) against a
real PostgreSQL server (integration_tests/conftest.py starts one per session from the pgserver
package), with and without the vector extension. Every run is searched for the password."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, Status

from destination_mistral.destination import DestinationMistral
from destination_mistral.enrich.results import Result
from destination_mistral.settings import parse_config
from destination_mistral.sinks.base import WriteItem
from destination_mistral.sinks.plans import columns_from_schema
from destination_mistral.sinks.postgres_sink import PostgresSink
from destination_mistral.sinks.schema import StreamPlan
from integration_tests.conftest import POSTGRES_WRITER_PASSWORD, admin_connection, writer_connection
from tests.support.builders import (
    catalog,
    complete,
    configured_stream,
    messages_with_states,
    record,
    review,
    serialize,
    state,
)

BIN = Path(sys.executable).parent
EMBED = {"mode": "embeddings", "fields": ["product", "review"]}
CHAT = {"mode": "chat", "prompt_template": "Review of {{ product }}: {{ review }}", "temperature": 0}
WITH_AND_WITHOUT_VECTOR = pytest.mark.parametrize(
    "postgres_database", [True, False], indirect=True, ids=["pgvector", "plain"]
)
PEOPLE = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "updated": {"type": ["null", "integer"]},
        "_ab_cdc_deleted_at": {"type": ["null", "string"]},
    },
}


def config_for(output: dict, api, enrichment=None, **output_changes) -> dict:
    return {
        "api_key": api.api_key if api else "k-00000000",
        "base_url": api.base_url if api else "http://127.0.0.1:9",
        "model": "mistral-small-latest",
        "enrichment": enrichment or {"mode": "none"},
        "output": {**output, **output_changes},
    }


def run_write(tmp_path: Path, config: dict, configured, messages) -> tuple[list[dict], int]:
    """`destination-mistral write` on the messages (or on lines of text); its stdout messages and exit
    code."""
    config_path, catalog_path = tmp_path / "config.json", tmp_path / "catalog.json"
    config_path.write_text(json.dumps(config))
    catalog_path.write_text(json.dumps(ConfiguredAirbyteCatalogSerializer.dump(configured)))
    done = subprocess.run(
        [str(BIN / "destination-mistral"), "write", "--config", str(config_path), "--catalog", str(catalog_path)],
        input=(messages if isinstance(messages, str) else serialize(messages)).encode(),
        capture_output=True,
        timeout=120,
    )
    assert POSTGRES_WRITER_PASSWORD not in (done.stdout + done.stderr).decode(errors="replace"), "the password leaked"
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")], done.returncode


def states(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "STATE"]


def errors(messages: list[dict]) -> list[dict]:
    return [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]


def query(output: dict, sql: str, params=()) -> list[tuple]:
    with writer_connection(output) as con:
        return con.execute(sql, params).fetchall()


def api_calls(emulator) -> int:
    routes = emulator.stats()["routes"]
    return sum(sum(counts.values()) for route, counts in routes.items() if route.startswith("POST /v1"))


@WITH_AND_WITHOUT_VECTOR
def test_embeddings_are_stored_as_pgvector_when_the_server_has_it_else_as_real_arrays(
    postgres_database, emulator, tmp_path, request
):
    vector = "pgvector" in request.node.callspec.id
    configured = configured_stream(mode="append", sync_id=7, generation_id=3, minimum_generation_id=0)
    out, code = run_write(
        tmp_path,
        config_for(postgres_database, emulator, EMBED, hnsw_index=vector),
        catalog(configured),
        messages_with_states((review(i) for i in range(12)), every=5),
    )
    assert code == 0 and len(states(out)) == 3, errors(out)
    rows = query(
        postgres_database,
        "SELECT id, format_type(atttypid, atttypmod), _airbyte_generation_id, _airbyte_meta, _mistral_model "
        "FROM reviews, pg_attribute WHERE attrelid = 'reviews'::regclass AND attname = '_mistral_embedding' "
        "ORDER BY id",
    )
    assert [r[0] for r in rows] == list(range(12))
    assert {r[1] for r in rows} == ({"vector(1024)"} if vector else {"real[]"})
    assert {r[2] for r in rows} == {3}, "every row carries the stream's generation"
    assert rows[0][3] == {"sync_id": 7, "changes": []} and rows[0][4] == "mistral-embed"
    if vector:
        nearest = query(
            postgres_database,
            "SELECT b.id FROM reviews a, reviews b WHERE a.id = 0 AND b.id <> 0 "
            "ORDER BY a._mistral_embedding <=> b._mistral_embedding LIMIT 1",
        )
        assert nearest[0][0] % 5 == 0, "the nearest review shares the same words"
        indexes = query(postgres_database, "SELECT indexdef FROM pg_indexes WHERE tablename = 'reviews'")
        assert any("hnsw" in i[0] and "vector_cosine_ops" in i[0] for i in indexes), indexes
    else:
        lengths = query(postgres_database, "SELECT DISTINCT array_length(_mistral_embedding, 1) FROM reviews")
        assert lengths == [(1024,)]


def test_an_hnsw_index_without_pgvector_is_refused_by_check(postgres_database, tmp_path):
    config = config_for(postgres_database, None, hnsw_index=True)
    status = DestinationMistral().check(None, config)
    assert status.status == Status.FAILED and "`output.hnsw_index`" in status.message, status.message


def test_append_dedup_keeps_the_newest_record_of_each_key_and_applies_cdc_deletes(postgres_database, tmp_path):
    stream = configured_stream("people", mode="append_dedup", schema=PEOPLE)
    stream.cursor_field = ["updated"]
    configured = catalog(stream)
    first = [
        record({"id": 1, "name": "a", "updated": 1}, "people"),
        record({"id": 2, "name": "b", "updated": 5}, "people"),
        record({"id": 1, "name": "a2", "updated": 2}, "people"),
        record({"id": 2, "name": "b-late-but-older", "updated": 4}, "people"),
        record({"id": None, "name": "keyless"}, "people"),
        state({"position": 5}, "people"),
    ]
    out, code = run_write(tmp_path, config_for(postgres_database, None), configured, first)
    assert code == 0 and len(states(out)) == 1, errors(out)
    second = [
        record({"id": 2, "name": "b-stale", "updated": 3}, "people"),
        record({"id": 1, "_ab_cdc_deleted_at": "2025-01-01T00:00:00Z", "updated": 9}, "people"),
        record({"id": 3, "name": "c", "updated": None}, "people"),
        state({"position": 3}, "people"),
    ]
    out, code = run_write(tmp_path, config_for(postgres_database, None), configured, second)
    assert code == 0 and len(states(out)) == 1, errors(out)
    rows = query(postgres_database, "SELECT id, name FROM people ORDER BY id NULLS LAST")
    assert rows == [(2, "b"), (3, "c"), (None, "keyless")], "one row per key, the newest; the deleted key gone"


def test_the_cursor_decides_between_records_of_a_key(postgres_database):
    """In the batch and against the stored rows: the greater cursor wins, a null cursor is older,
    and of equal cursors the later record wins."""
    settings = parse_config(config_for(postgres_database, None))
    plan = StreamPlan(
        name="people",
        namespace=None,
        sync_mode="append_dedup",
        primary_key=["id"],
        columns=columns_from_schema(PEOPLE, "people"),
        enrichment_mode="none",
        cursor_field="updated",
    )

    def items(*records):
        return [
            WriteItem(seq=i, record=r, emitted_at=1_700_000_000_000, raw_id=f"r{i}", result=None)
            for i, r in enumerate(records)
        ]

    sink = PostgresSink(settings.output, cache_enabled=False)
    try:
        sink.start([plan])
        sink.commit([(plan, items({"id": 1, "name": "new", "updated": 5}, {"id": 1, "name": "old", "updated": 3}))], [])
        sink.commit(
            [
                (
                    plan,
                    items(
                        {"id": 1, "name": "older", "updated": 4},
                        {"id": 2, "name": "null cursor", "updated": None},
                        {"id": 2, "name": "dated", "updated": 1},
                        {"id": 3, "name": "first", "updated": 2},
                        {"id": 3, "name": "second", "updated": 2},
                    ),
                )
            ],
            [],
        )
        sink.commit(
            [(plan, items({"id": 2, "name": "stale", "updated": None}, {"id": 3, "name": "tie", "updated": 2}))], []
        )
        sink.commit([(plan, items({"id": 1, "_ab_cdc_deleted_at": "x", "updated": 4}))], [])
    finally:
        sink.close()
    rows = query(postgres_database, "SELECT id, name FROM people ORDER BY id")
    assert rows == [(1, "new"), (2, "dated"), (3, "tie")], "an older delete leaves the newer row"


def test_overwrite_replaces_the_table_at_complete_and_a_failed_sync_keeps_the_old_one(postgres_database, tmp_path):
    config = config_for(postgres_database, None)

    def overwrite(sync: int):
        return catalog(
            configured_stream(mode="overwrite", sync_id=sync, generation_id=sync, minimum_generation_id=sync)
        )

    out, _ = run_write(tmp_path, config, overwrite(1), messages_with_states(review(i) for i in range(5)))
    assert len(states(out)) == 1
    out, _ = run_write(
        tmp_path, config, overwrite(2), messages_with_states((review(i) for i in range(100, 103)), completed=False)
    )
    assert len(states(out)) == 1, "the staged records are committed, so their STATE leaves"
    assert [r[0] for r in query(postgres_database, "SELECT id FROM reviews ORDER BY id")] == list(range(5)), (
        "a sync that never completed leaves yesterday's table whole"
    )
    out, _ = run_write(tmp_path, config, overwrite(3), messages_with_states(review(i) for i in range(200, 202)))
    rows = query(postgres_database, "SELECT id, _airbyte_generation_id FROM reviews ORDER BY id")
    assert rows == [(200, 3), (201, 3)], "the new generation alone, without the abandoned one's rows"
    tables = query(postgres_database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    assert ("_airbyte_tmp_reviews",) not in tables, tables


def test_a_second_sync_is_answered_by_the_cache_with_no_request(postgres_database, fresh_emulator, tmp_path):
    config = config_for(postgres_database, fresh_emulator, CHAT)
    configured = catalog(configured_stream(mode="append_dedup"))
    out, _ = run_write(tmp_path, config, configured, messages_with_states(review(i) for i in range(8)))
    assert len(states(out)) == 1 and api_calls(fresh_emulator) > 0
    fresh_emulator.reset_stats()
    out, _ = run_write(tmp_path, config, configured, messages_with_states(review(i) for i in range(8)))
    assert len(states(out)) == 1
    assert api_calls(fresh_emulator) == 0, "every answer was paid for by the first sync"
    rows = query(postgres_database, "SELECT _mistral_cached, _mistral_answer IS NOT NULL FROM reviews")
    assert rows == [(True, True)] * 8
    assert query(postgres_database, "SELECT count(*) FROM _mistral_cache") == [(8,)]


def test_a_value_that_does_not_fit_its_column_is_stored_as_null_and_named(postgres_database, tmp_path):
    data = review(1, rating="five", reviewed_at="not a date")
    data["review"] = "a \x00 b"  # PostgreSQL's text cannot hold a NUL byte
    # A number beyond bigint, and the source's own change, which the row keeps before the destination's.
    oversized = {"stream": "reviews", "data": review(2, rating=2**70), "emitted_at": 1_700_000_000_000}
    oversized["meta"] = {
        "changes": [{"field": "tags", "change": "TRUNCATED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"}]
    }
    lines = serialize([record(data)]) + json.dumps({"type": "RECORD", "record": oversized}) + "\n"
    out, code = run_write(
        tmp_path,
        config_for(postgres_database, None),
        catalog(configured_stream()),
        lines + serialize([state({"p": 2})]),
    )
    assert code == 0 and len(states(out)) == 1, errors(out)
    rows = query(postgres_database, "SELECT id, rating, reviewed_at, review, _airbyte_meta FROM reviews ORDER BY id")
    assert rows[0][:4] == (1, None, None, None)
    named = {change["field"] for change in rows[0][4]["changes"]}
    assert named == {"rating", "reviewed_at", "review"}, rows[0][4]
    assert all(c["reason"] == "DESTINATION_TYPECAST_ERROR" for c in rows[0][4]["changes"])
    assert rows[1][1] is None and [c["field"] for c in rows[1][4]["changes"]] == ["tags", "rating"], rows[1][4]


def test_a_store_failure_releases_no_further_state(postgres_server, postgres_database, tmp_path):
    """The server drops the connection after the first STATE came back: the next commit fails, the
    sync stops with a transient error, and no STATE after the first leaves."""
    config_path, catalog_path = tmp_path / "config.json", tmp_path / "catalog.json"
    config_path.write_text(json.dumps(config_for(postgres_database, None)))
    catalog_path.write_text(json.dumps(ConfiguredAirbyteCatalogSerializer.dump(catalog(configured_stream()))))
    process = subprocess.Popen(
        [str(BIN / "destination-mistral"), "write", "--config", str(config_path), "--catalog", str(catalog_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    timer = threading.Timer(120, process.kill)
    timer.start()
    try:
        process.stdin.write(serialize([*(record(review(i)) for i in range(5)), state({"position": 5})]).encode())
        process.stdin.flush()
        lines = []
        for line in process.stdout:
            lines.append(line.decode())
            if '"STATE"' in lines[-1]:
                break
        with admin_connection(postgres_server, postgres_database["database"]) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'destination-mistral'"
            )
        rest = [*(record(review(i)) for i in range(5, 10)), state({"position": 10}), complete()]
        process.stdin.write(serialize(rest).encode())
        process.stdin.close()
        lines += [line.decode() for line in process.stdout]
        stderr = process.stderr.read().decode(errors="replace")
        code = process.wait()
    finally:
        timer.cancel()
    assert POSTGRES_WRITER_PASSWORD not in "".join(lines) + stderr
    out = [json.loads(line) for line in lines if line.startswith("{")]
    assert [s["state"]["stream"]["stream_state"] for s in states(out)] == [{"position": 5}]
    failures = errors(out)
    assert code != 0 and failures and failures[0]["failure_type"] == "transient_error", failures
    assert "could not be written" in failures[0]["message"] and "postgresql://writer@" in failures[0]["message"]
    assert "the server is up and reachable" in failures[0]["message"], "a server's failure is not the disk's"
    assert [r[0] for r in query(postgres_database, "SELECT id FROM reviews ORDER BY id")][:5] == list(range(5))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"password": "wrong-password-123"}, "`output.password`"),
        ({"database": "no_such_database"}, "`output.database`"),
        ({"port": 1}, "`output.port`"),
    ],
    ids=["password", "database", "unreachable"],
)
def test_check_names_the_field_and_never_the_password(postgres_database, changes, field):
    config = config_for(postgres_database, None, **changes)
    status = DestinationMistral().check(None, config)
    assert status.status == Status.FAILED and field in status.message, status.message
    assert config["output"]["password"] not in status.message


def test_check_succeeds_and_writes_nothing_behind(postgres_database, monkeypatch):
    import destination_mistral.destination as destination_module

    async def every_model_exists(settings):
        return None

    monkeypatch.setattr(destination_module, "_check_api", every_model_exists)
    status = DestinationMistral().check(None, config_for(postgres_database, None, schema="checked"))
    assert status.status == Status.SUCCEEDED, status.message
    assert query(postgres_database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'checked'") == [(0,)]


def test_a_minimum_generation_drops_older_generations_at_complete(postgres_database, tmp_path):
    config = config_for(postgres_database, None)

    def sync(generation: int, minimum: int, ids, completed=True):
        stream = configured_stream(sync_id=generation, generation_id=generation, minimum_generation_id=minimum)
        return run_write(tmp_path, config, catalog(stream), messages_with_states(map(review, ids), completed=completed))

    sync(1, 0, range(3))
    sync(2, 0, range(3, 5))
    sync(3, 2, range(5, 6), completed=False)
    generations = "SELECT _airbyte_generation_id, count(*) FROM reviews GROUP BY 1 ORDER BY 1"
    assert query(postgres_database, generations) == [(1, 3), (2, 2), (3, 1)], "no COMPLETE: nothing is dropped"
    sync(4, 2, range(6, 7))
    assert query(postgres_database, generations) == [(2, 2), (3, 1), (4, 1)], "below the minimum: dropped"


def test_a_field_typed_more_widely_by_a_later_sync_keeps_its_values_and_dedup_keeps_one_row_per_key(
    postgres_database, tmp_path
):
    """The schema of a later sync turns an integer key and value into strings: the columns are
    widened with their values kept, new values are stored instead of nulled, and dedup keeps one
    row per key across the syncs."""
    config = config_for(postgres_database, None)

    def sync(kind: str, rows: list[dict]):
        fields = {"id": {"type": ["null", kind]}, "v": {"type": ["null", kind]}}
        stream = configured_stream(
            "widening", mode="append_dedup", primary_key=["id"], schema={"type": "object", "properties": fields}
        )
        messages, code = run_write(tmp_path, config, catalog(stream), messages_with_states(rows, stream="widening"))
        assert code == 0 and not errors(messages), errors(messages)

    sync("integer", [{"id": 1, "v": 5}])
    sync("string", [{"id": "abc", "v": "hello"}])
    sync("string", [{"id": "abc", "v": "hello again"}, {"id": "1", "v": "five"}])
    rows = query(postgres_database, "SELECT id, v, _airbyte_meta FROM widening ORDER BY id")
    assert [(key, value) for key, value, _ in rows] == [("1", "five"), ("abc", "hello again")]
    assert all(meta["changes"] == [] for _, _, meta in rows), "nothing was nulled as not fitting"
    types = query(
        postgres_database,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'widening' "
        "AND column_name IN ('id', 'v') ORDER BY 1",
    )
    assert types == [("id", "text"), ("v", "text")]


def test_a_stream_switched_from_append_to_dedup_keeps_one_row_per_key_from_its_first_dedup_sync(
    postgres_database, tmp_path
):
    config = config_for(postgres_database, None)

    def sync(mode: str, rows: list[dict]):
        stream = configured_stream("people", mode=mode, primary_key=["id"], schema=PEOPLE)
        stream.cursor_field = ["updated"]
        messages, code = run_write(tmp_path, config, catalog(stream), messages_with_states(rows, stream="people"))
        assert code == 0 and not errors(messages), errors(messages)

    sync("append", [{"id": 1, "name": "newest", "updated": 2}, {"id": 1, "name": "older", "updated": 1}])
    sync("append", [{"id": 2, "name": "first", "updated": 5}, {"id": 2, "name": "last", "updated": 5}])
    sync("append_dedup", [{"id": 3, "name": "new key", "updated": 1}])
    rows = query(postgres_database, "SELECT id, name FROM people ORDER BY id")
    assert rows == [(1, "newest"), (2, "last"), (3, "new key")]


@pytest.mark.parametrize(
    ("before", "after", "old", "new"),
    [
        ({"type": ["null", "integer"]}, {"type": ["null", "string"], "format": "date-time"}, 5, "2025-01-02T03:04:05Z"),
        ({"type": ["null", "integer"]}, {"type": ["null", "string"]}, 9, "10"),
        (
            {"type": ["null", "string"], "format": "date"},
            {"type": ["null", "string"], "format": "date-time"},
            None,
            None,
        ),
    ],
    ids=["integer-to-datetime", "integer-to-string", "date-to-datetime"],
)
def test_a_cursor_that_changed_type_lets_the_newer_record_win_and_keeps_every_value(
    postgres_database, tmp_path, before, after, old, new
):
    config = config_for(postgres_database, None)
    old = old if old is not None else "2025-01-01"
    new = new if new is not None else "2025-01-02T03:04:05Z"

    def sync(kind: dict, row: dict):
        schema = {"type": "object", "properties": {"id": {"type": "integer"}, "u": kind, "v": {"type": "string"}}}
        stream = configured_stream("changing", mode="append_dedup", primary_key=["id"], schema=schema)
        stream.cursor_field = ["u"]
        messages, code = run_write(tmp_path, config, catalog(stream), messages_with_states([row], stream="changing"))
        assert code == 0 and not errors(messages), errors(messages)

    sync(before, {"id": 1, "u": old, "v": "old"})
    sync(after, {"id": 1, "u": new, "v": "new"})
    rows = query(postgres_database, "SELECT v, u::text, _airbyte_meta FROM changing")
    assert [(v, meta["changes"]) for v, _, meta in rows] == [("new", [])], rows
    assert "03:04:05" in rows[0][1] or "10" in rows[0][1], "the new cursor is stored whole"


def test_a_schema_the_user_may_not_write_to_is_a_config_error_of_write_naming_the_field(
    postgres_server, postgres_database, tmp_path
):
    with admin_connection(postgres_server, postgres_database["database"]) as con:
        con.execute("CREATE SCHEMA locked")  # owned by the administrator: the writer may not create tables in it
    config = config_for(postgres_database, None, schema="locked")
    messages, code = run_write(
        tmp_path, config, catalog(configured_stream()), messages_with_states(map(review, range(3)))
    )
    assert code != 0 and not states(messages)
    (error,) = errors(messages)
    assert error["failure_type"] == "config_error" and "`output.schema`" in error["message"], error


@pytest.mark.parametrize("json_answer", [False, True], ids=["text", "json"])
def test_an_answer_holding_a_nul_byte_is_stored_as_null_and_named_and_the_record_keeps_its_fields(
    postgres_database, json_answer
):
    """PostgreSQL's text and jsonb hold no NUL byte: an answer holding one is NULL and named in
    `_airbyte_meta.changes`, like a field that does not fit, instead of the store refusing the whole
    record (which would lose its other fields)."""
    settings = parse_config(config_for(postgres_database, None, CHAT))
    plan = StreamPlan(
        name="people",
        namespace=None,
        sync_mode="append",
        primary_key=[],
        columns=columns_from_schema(PEOPLE, "people"),
        enrichment_mode="chat",
        answer_json=json_answer,
    )
    answer = {"summary": "a\x00b"} if json_answer else "an answer with a \x00 byte"
    result = Result(value=answer, model="mistral-small-latest", prompt_tokens=3, completion_tokens=4)
    item = WriteItem(seq=0, record={"id": 1, "name": "kept"}, emitted_at=1_700_000_000_000, raw_id="r0", result=result)
    sink = PostgresSink(settings.output, cache_enabled=False)
    try:
        sink.start([plan])
        sink.commit([(plan, [item])], [])
    finally:
        sink.close()
    [(name, stored, error, meta)] = query(
        postgres_database, "SELECT name, _mistral_answer, _mistral_error, _airbyte_meta FROM people"
    )
    assert (name, stored, error) == ("kept", None, None)
    assert [c["field"] for c in meta["changes"]] == ["_mistral_answer"], meta
