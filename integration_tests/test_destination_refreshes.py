"""Refreshes, generations, dedup by cursor, CDC deletes and `_airbyte_meta`, as Airbyte's own
destination suite (BasicFunctionalityIntegrationTest in the bulk CDK's test fixtures) checks them:
testBasicWrite, testTruncateRefresh, testTruncateRefreshChangeSyncMode, testOverwriteSchemaEvolution,
testDedup (and WithStringKey), testDedupNoCursor and testDedupChangeCursor, each expressed as a test
of ours through the real `write` path, in both outputs. The rows are read back as the suite's
OutputRecord: extracted_at, generation_id, the record's data and `_airbyte_meta`.

destination-mistral commits no new data of a truncate refresh before its stream's COMPLETE status
(the suite's `commitDataIncrementally = false`): the rows wait in a staging table or file.

Enrichment is `none` here, except where a test says what an enrichment must not pay for."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import duckdb
import pytest
from airbyte_cdk.models import Type
from airbyte_cdk.models.airbyte_protocol import (
    AirbyteRecordMessageMeta,
    AirbyteRecordMessageMetaChange,
    Change,
    Reason,
)

from destination_mistral.destination import DestinationMistral
from integration_tests.test_destination_platform_scenarios import OUTPUTS, config_for
from tests.support.builders import catalog, complete, configured_stream, record, state

INT = {"type": ["null", "integer"]}
STRING = {"type": ["null", "string"]}
TIMESTAMPTZ = {"type": ["null", "string"], "format": "date-time"}
# The suite's emittedAtMs are small (1234); the destination reads a value that small as seconds
# (PyAirbyte sends seconds), so these tests use milliseconds of this century.
T0 = 1_700_000_000_000


def schema(**fields: dict) -> dict:
    return {"type": "object", "properties": fields}


def stream(
    fields: dict,
    mode: str = "append",
    *,
    generation: int | None,
    minimum: int = 0,
    sync_id: int | None = 42,
    primary_key: Sequence[str] = ("id",),
    cursor: str | None = None,
    name: str = "test_stream",
):
    configured = configured_stream(
        name,
        mode=mode,
        primary_key=primary_key,
        schema=schema(**fields),
        sync_id=sync_id,
        generation_id=generation,
        minimum_generation_id=minimum,
    )
    configured.cursor_field = [cursor] if cursor else None
    return configured


def run(tmp_path, output, configured, records: Sequence[tuple[dict, int]], *, completed=True, changes=None):
    """One sync of `records` ((data, emitted_at) pairs) and a STATE after them; without `completed`
    the source failed: no COMPLETE status."""
    name = configured.stream.name
    messages = []
    for data, emitted_at in records:
        message = record(data, stream=name, emitted_at=emitted_at)
        if changes:
            message.record.meta = AirbyteRecordMessageMeta(changes=changes)
        messages.append(message)
    messages.append(state({"position": len(records)}, stream=name))
    if completed:
        messages.append(complete(name))
    return list(DestinationMistral().write(config_for(tmp_path, output), catalog(configured), messages))


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value


def dump(tmp_path, output, fields: Sequence[str], name="test_stream") -> list[tuple]:
    """The stream's rows as (extracted_at in ms, generation_id, data without nulls, meta), sorted."""
    if output == "duckdb":
        con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
        try:
            if not con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
            ).fetchone()[0]:
                return []
            cursor = con.execute(f'SELECT * FROM "{name}"')
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            con.close()
        for row in rows:
            row["_airbyte_meta"] = json.loads(row["_airbyte_meta"])
            row["_airbyte_extracted_at"] = int(row["_airbyte_extracted_at"].timestamp() * 1000)
    else:
        path = tmp_path / "jsonl" / f"{name}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        for row in rows:
            row["_airbyte_extracted_at"] = int(
                dt.datetime.fromisoformat(row["_airbyte_extracted_at"]).timestamp() * 1000
            )
    out = [
        (
            row["_airbyte_extracted_at"],
            row["_airbyte_generation_id"],
            {f: _plain(row[f]) for f in fields if row.get(f) is not None},
            row["_airbyte_meta"],
        )
        for row in rows
    ]
    return sorted(out, key=lambda r: (r[0], json.dumps(r[2], sort_keys=True)))


def meta(sync_id: int, changes: list | None = None) -> dict:
    return {"sync_id": sync_id, "changes": changes or []}


def states(messages):
    return [m for m in messages if m.type == Type.STATE]


# ---- testBasicWrite ------------------------------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_record_is_stored_with_its_generation_sync_id_and_the_sources_meta_changes(tmp_path, output):
    configured = stream({"id": INT}, generation=0, sync_id=42)
    source_change = AirbyteRecordMessageMetaChange(
        field="foo", change=Change.NULLED, reason=Reason.SOURCE_FIELD_SIZE_LIMITATION
    )
    out = run(tmp_path, output, configured, [({"id": 5678, "undeclared": "asdf"}, T0 + 1234)], changes=[source_change])
    assert len(states(out)) == 1, "exactly one STATE, for the one STATE sent"
    assert states(out)[0].state.destinationStats.recordCount == 1
    assert states(out)[0].state.stream.stream_state.position == 1, "the STATE leaves as the source wrote it"
    expected_changes = [{"field": "foo", "change": "NULLED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"}]
    assert dump(tmp_path, output, ["id"]) == [(T0 + 1234, 0, {"id": 5678}, meta(42, expected_changes))]


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("mode", ["append", "append_dedup", "overwrite"])
def test_the_sources_meta_changes_come_first_then_the_destinations_own(tmp_path, output, mode):
    configured = stream({"id": INT, "n": INT}, mode, generation=3, minimum=3 if mode == "overwrite" else 0)
    truncated = AirbyteRecordMessageMetaChange(
        field="review", change=Change.TRUNCATED, reason=Reason.SOURCE_FIELD_SIZE_LIMITATION
    )
    run(tmp_path, output, configured, [({"id": 1, "n": "five"}, T0)], changes=[truncated])
    source = {"field": "review", "change": "TRUNCATED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"}
    # JSON Lines keeps the value as it came; DuckDB's integer column cannot hold "five".
    ours = [{"field": "n", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}] if output == "duckdb" else []
    assert [row[3] for row in dump(tmp_path, output, ["id", "n"])] == [meta(42, [source, *ours])]


# ---- testTruncateRefresh -------------------------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("mode", ["append", "append_dedup", "overwrite"])
def test_a_truncate_refresh_keeps_the_old_generation_until_complete_then_only_its_own(tmp_path, output, mode):
    fields = {"id": INT, "name": STRING}
    columns = ["id", "name"]
    run(tmp_path, output, stream(fields, mode, generation=12, sync_id=42), [({"id": 42, "name": "first_value"}, T0)])
    refresh = stream(fields, mode, generation=13, minimum=13, sync_id=43)
    interrupted = run(tmp_path, output, refresh, [({"id": 42, "name": "second_value"}, T0 + 1111)], completed=False)
    assert len(states(interrupted)) == 1, "the record is stored (in staging), so its STATE leaves"
    first = (T0, 12, {"id": 42, "name": "first_value"}, meta(42))
    assert dump(tmp_path, output, columns) == [first], "no COMPLETE: the old generation stays, the new one waits"
    run(tmp_path, output, refresh, [({"id": 42, "name": "third_value"}, T0 + 2222)])
    second = (T0 + 1111, 13, {"id": 42, "name": "second_value"}, meta(43))
    third = (T0 + 2222, 13, {"id": 42, "name": "third_value"}, meta(43))
    expected = [third] if mode == "append_dedup" else [second, third]
    assert dump(tmp_path, output, columns) == expected, "the COMPLETE leaves only generation 13, both its attempts"


# ---- testTruncateRefreshChangeSyncMode ---------------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize(("first_mode", "then_mode"), [("append_dedup", "append"), ("append", "append_dedup")])
def test_a_truncate_refresh_completes_in_another_sync_mode_than_the_interrupted_one(
    tmp_path, output, first_mode, then_mode
):
    fields = {"id": INT, "name": STRING}
    interrupted = stream(fields, first_mode, generation=12, minimum=12, sync_id=42)
    run(tmp_path, output, interrupted, [({"id": 42, "name": "first_value"}, T0)], completed=False)
    assert dump(tmp_path, output, ["id", "name"]) == [], "nothing is visible before a COMPLETE"
    final = stream(fields, then_mode, generation=13, minimum=13, sync_id=43)
    run(tmp_path, output, final, [({"id": 43, "name": "second_value"}, T0 + 1111)])
    assert dump(tmp_path, output, ["id", "name"]) == [(T0 + 1111, 13, {"id": 43, "name": "second_value"}, meta(43))]


# ---- testOverwriteSchemaEvolution --------------------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_truncate_refresh_takes_the_new_schema_and_the_next_sync_keeps_it(tmp_path, output):
    old = {"id": INT, "to_drop": STRING, "to_change": INT}
    run(tmp_path, output, stream(old, generation=1, sync_id=42), [({"id": 42, "to_drop": "val1", "to_change": 42}, T0)])
    new = {"id": INT, "to_change": STRING, "to_add": STRING}
    columns = ["id", "to_drop", "to_change", "to_add"]
    changed = stream(new, generation=2, minimum=2, sync_id=43)
    run(tmp_path, output, changed, [({"id": 42, "to_change": "val2", "to_add": "val3"}, T0)])
    second = (T0, 2, {"id": 42, "to_change": "val2", "to_add": "val3"}, meta(43))
    assert dump(tmp_path, output, columns) == [second], "the refresh replaced the rows and the columns"
    if output == "duckdb":
        con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'test_stream'"
            ).fetchall()
        )
        con.close()
        assert "to_drop" not in types and types["to_change"] == "VARCHAR", types
    following = stream(new, generation=2, minimum=0, sync_id=44)
    run(tmp_path, output, following, [({"id": 42, "to_change": "val4", "to_add": "val5"}, T0 + 4444)])
    fourth = (T0 + 4444, 2, {"id": 42, "to_change": "val4", "to_add": "val5"}, meta(44))
    assert dump(tmp_path, output, columns) == [second, fourth]


# ---- testDedup, testDedupWithStringKey ---------------------------------------------------------------

DEDUP_FIELDS = {"id1": INT, "id2": INT, "updated_at": TIMESTAMPTZ, "name": STRING, "_ab_cdc_deleted_at": TIMESTAMPTZ}
DEDUP_COLUMNS = ["id1", "id2", "updated_at", "name", "_ab_cdc_deleted_at"]


def dedup_stream(id_type: dict, sync_id: int):
    fields = {**DEDUP_FIELDS, "id1": id_type}
    return stream(
        fields, "append_dedup", generation=42, sync_id=sync_id, primary_key=("id1", "id2"), cursor="updated_at"
    )


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize(("id_type", "id1"), [(INT, 1), (STRING, "9cf974de-52cf-4194-9f3d-7efa76ba4d84")])
def test_dedup_keeps_the_newest_cursor_per_key_and_applies_cdc_deletes(tmp_path, output, id_type, id1):
    def person(id2: int, updated_at: str, **fields) -> dict:
        return {"id1": id1, "id2": id2, "updated_at": f"2000-01-{updated_at}Z", **fields}

    run(
        tmp_path,
        output,
        dedup_stream(id_type, 42),
        [
            (person(200, "01T00:00:00", name="Alice1", _ab_cdc_deleted_at=None), T0),
            (person(200, "01T00:01:00", name="Alice2", _ab_cdc_deleted_at=None), T0),
            # No _ab_cdc_deleted_at at all: CDC sources usually send null, but a missing field is no delete either.
            (person(201, "01T00:02:00", name="Bob1"), T0),
        ],
    )
    alice2 = (T0, 42, person(200, "01T00:01:00", name="Alice2"), meta(42))
    bob1 = (T0, 42, person(201, "01T00:02:00", name="Bob1"), meta(42))
    assert dump(tmp_path, output, DEDUP_COLUMNS) == [alice2, bob1]
    deleted = "1970-01-01T00:00:00Z"  # only whether it is set counts, not its value
    run(
        tmp_path,
        output,
        dedup_stream(id_type, 43),
        [
            (person(200, "02T00:00:00", name="Alice3", _ab_cdc_deleted_at=None), T0 + 1000),
            (person(201, "02T00:00:00", name="Bob2"), T0 + 1000),
            (person(201, "02T00:01:00", _ab_cdc_deleted_at=deleted), T0 + 1000),
            # Charlie is inserted and deleted within one sync.
            (person(202, "02T00:00:00", name="Charlie1"), T0 + 1000),
            (person(202, "02T00:01:00", _ab_cdc_deleted_at=deleted), T0 + 1000),
            # A delete of a key never stored: nothing to remove, and the delete is not stored either.
            (person(203, "02T00:01:00", _ab_cdc_deleted_at=deleted), T0 + 1000),
        ],
    )
    alice3 = (T0 + 1000, 42, person(200, "02T00:00:00", name="Alice3"), meta(43))
    assert dump(tmp_path, output, DEDUP_COLUMNS) == [alice3], "Bob and Charlie are deleted (hard delete)"
    bob3 = person(201, "03T00:00:00", name="Bob3")
    run(tmp_path, output, dedup_stream(id_type, 44), [(bob3, T0 + 2000)])
    assert dump(tmp_path, output, DEDUP_COLUMNS) == [alice3, (T0 + 2000, 42, bob3, meta(44))], (
        "a record with a newer cursor after a delete inserts the key again"
    )


@pytest.mark.parametrize("output", OUTPUTS)
def test_dedup_keeps_the_newest_cursor_whatever_the_order_records_arrive_in(tmp_path, output):
    fields = {"id": INT, "seq": INT, "name": STRING}
    configured = stream(fields, "append_dedup", generation=1, cursor="seq")
    run(
        tmp_path,
        output,
        configured,
        [({"id": 1, "seq": 5, "name": "newest"}, T0), ({"id": 1, "seq": 3, "name": "late but older"}, T0)],
    )
    assert [r[2]["name"] for r in dump(tmp_path, output, ["name"])] == ["newest"], "within one batch"
    run(
        tmp_path, output, configured, [({"id": 1, "seq": 4, "name": "older"}, T0), ({"id": 1, "name": "no cursor"}, T0)]
    )
    assert [r[2]["name"] for r in dump(tmp_path, output, ["name"])] == ["newest"], (
        "against the stored row: an older cursor and a null cursor change nothing"
    )
    run(tmp_path, output, configured, [({"id": 1, "seq": 5, "name": "same cursor, later"}, T0)])
    assert [r[2]["name"] for r in dump(tmp_path, output, ["name"])] == ["same cursor, later"], (
        "equal cursors: later wins"
    )


@pytest.mark.parametrize("output", OUTPUTS)
def test_dedup_compares_timestamp_cursors_as_moments_whatever_their_offset(tmp_path, output):
    configured = stream({"id": INT, "at": TIMESTAMPTZ, "name": STRING}, "append_dedup", generation=1, cursor="at")
    run(tmp_path, output, configured, [({"id": 1, "at": "2000-01-01T00:00:00Z", "name": "midnight UTC"}, T0)])
    run(tmp_path, output, configured, [({"id": 1, "at": "2000-01-01T00:30:00+01:00", "name": "earlier"}, T0)])
    assert [r[2]["name"] for r in dump(tmp_path, output, ["name"])] == ["midnight UTC"], "00:30+01:00 is 23:30 UTC"


# ---- testDedupNoCursor, testDedupChangeCursor --------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
def test_dedup_without_a_cursor_keeps_the_last_record_to_arrive(tmp_path, output):
    configured = stream({"id": INT, "name": STRING}, "append_dedup", generation=0, sync_id=42)
    run(tmp_path, output, configured, [({"id": 1234, "name": "a"}, T0 + 1234)])
    run(tmp_path, output, configured, [({"id": 1234, "name": "b"}, T0 + 5678)])
    assert dump(tmp_path, output, ["id", "name"]) == [(T0 + 5678, 0, {"id": 1234, "name": "b"}, meta(42))]


@pytest.mark.parametrize("output", OUTPUTS)
def test_dedup_counts_a_missing_cursor_as_older_when_the_cursor_field_changes(tmp_path, output):
    def cursor_stream(cursor: str):
        fields = {"id": INT, cursor: INT, "name": STRING}
        return stream(fields, "append_dedup", generation=42, cursor=cursor)

    run(tmp_path, output, cursor_stream("cursor1"), [({"id": 1, "cursor1": 1, "name": "foo_cursor1"}, T0 + 100)])
    run(tmp_path, output, cursor_stream("cursor2"), [({"id": 1, "cursor2": 1, "name": "foo_cursor2"}, T0 + 200)])
    assert dump(tmp_path, output, ["id", "cursor2", "name"]) == [
        (T0 + 200, 42, {"id": 1, "cursor2": 1, "name": "foo_cursor2"}, meta(42))
    ]


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_stream_switched_from_append_to_dedup_keeps_one_row_per_key_from_its_first_dedup_sync(tmp_path, output):
    """The rows appended before hold every version of a key; the first append_dedup sync leaves the
    newest by cursor (of equal cursors the one extracted last) for every key, including keys it
    does not receive, and keeps the rows without a key."""
    fields = {"id": INT, "u": INT, "name": STRING}
    appended = [({"id": 1, "u": 2, "name": "1 newest"}, T0 + 1), ({"id": 1, "u": 1, "name": "1 older"}, T0 + 2)]
    appended += [({"id": 2, "u": 5, "name": "2 first"}, T0 + 3), ({"id": 2, "u": 5, "name": "2 last"}, T0 + 4)]
    appended += [({"u": 1, "name": "keyless"}, T0 + 5), ({"u": 1, "name": "keyless"}, T0 + 6)]
    run(tmp_path, output, stream(fields, "append", generation=1), appended)
    run(tmp_path, output, stream(fields, "append_dedup", generation=1, cursor="u"), [({"id": 3, "u": 1}, T0 + 7)])
    names = sorted(str(row[2].get("name")) for row in dump(tmp_path, output, ["name"]))
    assert names == ["1 newest", "2 last", "None", "keyless", "keyless"]


# ---- generations beyond the suite ----------------------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_cancelled_truncate_refresh_hands_its_acknowledged_rows_to_the_next_sync(tmp_path, output, mode):
    """Airbyte's resumeAfterCancelledTruncate: a refresh stops without its COMPLETE after its STATE
    was released, then a normal sync runs. The platform will not send that record again, so it
    must not stay behind in the staging table."""
    fields = {"id": INT, "name": STRING}
    first = [({"id": 1, "name": "v1"}, T0), ({"id": 2, "name": "v1"}, T0)]
    run(tmp_path, output, stream(fields, mode, generation=41, sync_id=41), first)
    refresh = stream(fields, mode, generation=42, minimum=42, sync_id=42)
    run(tmp_path, output, refresh, [({"id": 1, "name": "v2"}, T0 + 1)], completed=False)
    run(tmp_path, output, stream(fields, mode, generation=43, sync_id=43), [({"id": 2, "name": "v3"}, T0 + 2)])
    held = sorted((r[2]["id"], r[2]["name"], r[1]) for r in dump(tmp_path, output, ["id", "name"]))
    if mode == "append":
        assert held == [(1, "v1", 41), (1, "v2", 42), (2, "v1", 41), (2, "v3", 43)]
    else:
        assert held == [(1, "v2", 42), (2, "v3", 43)]
    leftovers = list((tmp_path / "jsonl").glob("*.staging")) if output == "jsonl" else []
    assert leftovers == [], "the staging copy is gone once taken in"


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_minimum_generation_below_the_current_one_drops_older_generations_at_complete(tmp_path, output):
    fields = {"id": INT}
    run(tmp_path, output, stream(fields, generation=None, sync_id=None), [({"id": 0}, T0)])  # before generations
    run(tmp_path, output, stream(fields, generation=1), [({"id": 1}, T0)])
    run(tmp_path, output, stream(fields, generation=2), [({"id": 2}, T0)])
    third = stream(fields, generation=3, minimum=2)
    run(tmp_path, output, third, [({"id": 3}, T0)], completed=False)
    assert sorted(r[2]["id"] for r in dump(tmp_path, output, ["id"])) == [0, 1, 2, 3], "nothing goes before COMPLETE"
    run(tmp_path, output, third, [({"id": 4}, T0)])
    assert sorted((r[2]["id"], r[1]) for r in dump(tmp_path, output, ["id"])) == [(2, 2), (3, 3), (4, 3)]


def test_a_table_written_before_generations_gains_the_column_with_null_for_its_rows(tmp_path):
    fields = {"id": INT}
    run(tmp_path, "duckdb", stream(fields, generation=1), [({"id": 1}, T0)])
    con = duckdb.connect(str(tmp_path / "out.duckdb"))
    con.execute("ALTER TABLE test_stream DROP COLUMN _airbyte_generation_id")  # as an earlier version left it
    con.close()
    run(tmp_path, "duckdb", stream(fields, generation=7), [({"id": 2}, T0)])
    assert sorted((r[2]["id"], r[1]) for r in dump(tmp_path, "duckdb", ["id"])) == [(1, None), (2, 7)]


def test_a_catalog_without_generations_writes_null(tmp_path):
    run(tmp_path, "jsonl", stream({"id": INT}, generation=None, sync_id=None), [({"id": 1}, T0)])
    assert dump(tmp_path, "jsonl", ["id"]) == [(T0, None, {"id": 1}, {"changes": []})]


def test_a_cdc_delete_is_not_sent_for_enrichment(fresh_emulator, tmp_path):
    """A delete removes its key's row and is never stored: paying for its answer would be waste."""
    config = {
        "api_key": fresh_emulator.api_key,
        "base_url": fresh_emulator.base_url,
        "enrichment": {"mode": "chat", "prompt_template": "{{ name }}"},
        "output": {"type": "duckdb", "path": str(tmp_path / "out.duckdb")},
    }
    fields = {"id": INT, "name": STRING, "_ab_cdc_deleted_at": TIMESTAMPTZ}
    configured = stream(fields, "append_dedup", generation=1)
    messages = [
        record({"id": 1, "name": "kept"}, stream="test_stream"),
        record({"id": 2, "name": "gone", "_ab_cdc_deleted_at": "2024-01-01T00:00:00Z"}, stream="test_stream"),
        state({"position": 2}, stream="test_stream"),
        complete("test_stream"),
    ]
    fresh_emulator.reset_stats()
    out = list(DestinationMistral().write(config, catalog(configured), messages))
    assert len(states(out)) == 1
    answered = fresh_emulator.stats()["routes"].get("POST /v1/chat/completions", {}).get("200", 0)
    assert answered == 1, "only the record that is stored was sent"
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    assert con.execute("SELECT id FROM test_stream").fetchall() == [(1,)]
    con.close()


@pytest.mark.parametrize("output", OUTPUTS)
def test_dedup_compares_an_untyped_cursors_numbers_as_numbers(tmp_path, output):
    """A cursor the schema types as several types (or not at all) is stored as JSON; its numbers must
    still compare as numbers (10 newer than 9), not as text ('9' above '10')."""
    configured = stream({"id": INT, "u": {"type": ["null", "integer", "string"]}, "name": STRING}, "append_dedup",
                        generation=1, cursor="u")  # fmt: skip
    run(
        tmp_path,
        output,
        configured,
        [({"id": 1, "u": 10, "name": "newest"}, T0), ({"id": 1, "u": 9, "name": "older"}, T0)],
    )
    assert [r[2]["name"] for r in dump(tmp_path, output, ["name"])] == ["newest"], "within one batch"
    run(tmp_path, output, configured, [({"id": 1, "u": 9, "name": "older, later sync"}, T0)])
    assert [r[2]["name"] for r in dump(tmp_path, output, ["name"])] == ["newest"], "against the stored row"
    run(tmp_path, output, configured, [({"id": 1, "u": 11, "name": "newer"}, T0)])
    assert [r[2]["name"] for r in dump(tmp_path, output, ["name"])] == ["newer"]


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_field_typed_more_widely_by_a_later_sync_keeps_its_values_and_dedup_keeps_one_row_per_key(tmp_path, output):
    """A source whose schema changes an integer field (here the key) to a string: the column is
    widened, the stored values kept, and the new ones stored instead of nulled; dedup still holds
    one row per key across syncs."""
    run(tmp_path, output, stream({"id": INT, "v": INT}, "append_dedup", generation=1), [({"id": 1, "v": 5}, T0)])
    widened = stream({"id": STRING, "v": STRING}, "append_dedup", generation=1)
    run(tmp_path, output, widened, [({"id": "abc", "v": "hello"}, T0)])
    run(tmp_path, output, widened, [({"id": "abc", "v": "hello again"}, T0)])
    rows = sorted((str(r[2]["id"]), str(r[2]["v"])) for r in dump(tmp_path, output, ["id", "v"]))
    assert rows == [("1", "5"), ("abc", "hello again")], rows


DATE = {"type": ["null", "string"], "format": "date"}
BOOLEAN = {"type": ["null", "boolean"]}


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize(
    ("before", "after", "old", "new"),
    [
        (INT, TIMESTAMPTZ, 5, "2025-01-02T03:04:05Z"),  # a cursor that becomes a moment
        (INT, STRING, 9, "10"),  # "10" sorts below "9" as text
        (STRING, INT, "9", 10),
    ],
    ids=["integer-to-datetime", "integer-to-string", "string-to-integer"],
)
def test_a_newer_record_wins_when_its_cursor_field_changed_type(tmp_path, output, before, after, old, new):
    """The record of the later sync, whose cursor is of the new type, replaces the stored one: values
    of two kinds do not compare, and the later record wins; neither cursor is nulled."""
    run(
        tmp_path,
        output,
        stream({"id": INT, "u": before, "v": STRING}, "append_dedup", generation=1, cursor="u"),
        [({"id": 1, "u": old, "v": "old"}, T0)],
    )
    changed = stream({"id": INT, "u": after, "v": STRING}, "append_dedup", generation=1, cursor="u")
    run(tmp_path, output, changed, [({"id": 1, "u": new, "v": "new"}, T0 + 1)])
    rows = dump(tmp_path, output, ["id", "u", "v"])
    assert [r[2]["v"] for r in rows] == ["new"], rows
    assert rows[0][3]["changes"] == [], "the new cursor was stored whole"


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize(
    ("before", "after", "old", "new"),
    [
        (DATE, TIMESTAMPTZ, "2025-01-01", "2025-01-02T03:04:05Z"),  # the time of day is kept
        (BOOLEAN, INT, True, 7),
        (INT, BOOLEAN, 7, False),
        (INT, TIMESTAMPTZ, 7, "2025-01-02T03:04:05Z"),
        (INT, {"type": ["null", "number"]}, 9007199254740993, 1.5),  # past 2**53: a double would round it
        (TIMESTAMPTZ, {"type": ["null", "object"]}, "2024-05-01T10:11:12+02:00", {"k": 1}),
    ],
    ids=[
        "date-to-datetime",
        "boolean-to-integer",
        "integer-to-boolean",
        "integer-to-datetime",
        "big-integer-to-number",
        "datetime-to-object",
    ],
)
def test_a_field_that_changed_type_keeps_its_stored_values_and_stores_the_new_ones_whole(
    tmp_path, output, before, after, old, new
):
    run(tmp_path, output, stream({"id": INT, "f": before}, "append", generation=1), [({"id": 1, "f": old}, T0)])
    run(tmp_path, output, stream({"id": INT, "f": after}, "append", generation=1), [({"id": 2, "f": new}, T0 + 1)])
    rows = dump(tmp_path, output, ["id", "f"])
    assert all(r[3]["changes"] == [] for r in rows), [r[3] for r in rows]
    values = {r[2]["id"]: r[2].get("f") for r in rows}
    assert values[1] is not None and values[2] is not None, values
    if after is TIMESTAMPTZ and output == "duckdb":
        assert "03:04:05" in str(values[2]), "the moment keeps its time of day"
    if old == 9007199254740993:
        assert "9007199254740993" in str(values[1]), "the stored integer keeps every digit"
    if before is TIMESTAMPTZ:
        assert "2024-05-01T" in str(values[1]), f"the stored moment stays ISO 8601 text: {values[1]}"
