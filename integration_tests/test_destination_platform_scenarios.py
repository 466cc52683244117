"""The scenarios of Airbyte's own destination suite (BasicFunctionalityIntegrationTest in the bulk
CDK's test fixtures) that apply to destination-mistral, each expressed as a test of ours, in both
outputs: refreshes and truncates that take effect only on the stream's COMPLETE status, interrupted
and resumed truncates, mid-sync checkpoints, empty syncs, funky names and dedup.

Enrichment is `none` here: these are promises of the store and the STATE flow, not of the API."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import duckdb
import pytest
from airbyte_cdk.models import Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.destination import DestinationMistral
from tests.support.builders import catalog, complete, configured_stream, record, review, state

OUTPUTS = ["duckdb", "jsonl"]


def config_for(tmp_path: Path, output: str) -> dict:
    out = (
        {"type": "duckdb", "path": str(tmp_path / "out.duckdb")}
        if output == "duckdb"
        else {"type": "jsonl", "directory": str(tmp_path / "jsonl")}
    )
    return {"api_key": "k-123456", "base_url": "http://127.0.0.1:9", "enrichment": {"mode": "none"}, "output": out}


def sync(
    tmp_path, output, mode, ids, *, generation, truncate=False, completed=True, status=None, name="reviews", texts=None
):
    """One sync of `ids` (a STATE after each record) as the platform runs it: a truncate refresh
    has minimum_generation_id = generation_id; a source that fails sends no COMPLETE."""
    stream = configured_stream(
        name, mode=mode, generation_id=generation, minimum_generation_id=generation if truncate else 0
    )
    messages = []
    for position, i in enumerate(ids, 1):
        messages.append(record(review(i, texts[i] if texts else None), stream=name))
        messages.append(state({"position": position}, stream=name))
    if completed:
        messages.append(complete(name))
    elif status is not None:
        messages.append(status)
    return list(DestinationMistral().write(config_for(tmp_path, output), catalog(stream), messages))


def stored(tmp_path, output, name="reviews", column="id"):
    if output == "duckdb":
        con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
        try:
            tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            if name not in tables:
                return []
            return sorted(r[0] for r in con.execute(f'SELECT "{column}" FROM "{name}"').fetchall())
        finally:
            con.close()
    path = tmp_path / "jsonl" / f"{name}.jsonl"
    return sorted(json.loads(line).get(column) for line in path.read_text().splitlines()) if path.exists() else []


def states(messages):
    return [m for m in messages if m.type == Type.STATE]


@pytest.mark.parametrize("output", OUTPUTS)
def test_truncate_refresh_replaces_older_generations_once_the_stream_completes(tmp_path, output):
    sync(tmp_path, output, "append", [1, 2], generation=1)
    sync(tmp_path, output, "append", [3], generation=2, truncate=True)
    assert stored(tmp_path, output) == [3], "a truncate refresh keeps only the new generation"


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("mode", ["append", "append_dedup", "overwrite"])
def test_interrupted_truncate_with_prior_data_keeps_it_and_resumes(tmp_path, output, mode):
    sync(tmp_path, output, mode, [1, 2], generation=1)
    interrupted = sync(tmp_path, output, mode, [3], generation=2, truncate=True, completed=False)
    assert len(states(interrupted)) == 1, "the record is stored (in staging), so its STATE is released"
    assert stored(tmp_path, output) == [1, 2], "no COMPLETE: the previous data stays whole"
    sync(tmp_path, output, mode, [4], generation=2, truncate=True)
    assert stored(tmp_path, output) == [3, 4], "the next attempt of the generation keeps what the first stored"


@pytest.mark.parametrize("output", OUTPUTS)
def test_interrupted_truncate_without_prior_data_shows_nothing_until_complete(tmp_path, output):
    sync(tmp_path, output, "overwrite", [1], generation=1, truncate=True, completed=False)
    assert stored(tmp_path, output) == []
    sync(tmp_path, output, "overwrite", [2], generation=1, truncate=True)
    assert stored(tmp_path, output) == [1, 2]


@pytest.mark.parametrize("output", OUTPUTS)
def test_resume_after_a_cancelled_truncate_ignores_an_incomplete_status(tmp_path, output):
    from airbyte_cdk.models import AirbyteStreamStatus

    cancelled = complete("reviews")
    cancelled.trace.stream_status.status = AirbyteStreamStatus.INCOMPLETE
    sync(tmp_path, output, "append", [1, 2], generation=1)
    sync(tmp_path, output, "append", [3], generation=2, truncate=True, completed=False, status=cancelled)
    assert stored(tmp_path, output) == [1, 2], "INCOMPLETE is not COMPLETE"
    sync(tmp_path, output, "append", [4, 5], generation=2, truncate=True)
    assert stored(tmp_path, output) == [3, 4, 5]


@pytest.mark.parametrize("output", OUTPUTS)
def test_truncate_refresh_with_no_data_empties_the_stream(tmp_path, output):
    sync(tmp_path, output, "append", [1, 2], generation=1)
    sync(tmp_path, output, "append", [], generation=2, truncate=True)
    assert stored(tmp_path, output) == []


@pytest.mark.parametrize("output", OUTPUTS)
def test_clear_an_overwrite_stream_with_no_records(tmp_path, output):
    sync(tmp_path, output, "overwrite", [1, 2], generation=1, truncate=True)
    sync(tmp_path, output, "overwrite", [], generation=2, truncate=True)
    assert stored(tmp_path, output) == []


@pytest.mark.parametrize("output", OUTPUTS)
def test_an_append_sync_with_no_data_changes_nothing(tmp_path, output):
    sync(tmp_path, output, "append", [1, 2], generation=1)
    out = sync(tmp_path, output, "append", [], generation=2)
    assert stored(tmp_path, output) == [1, 2]
    assert states(out) == []


@pytest.mark.parametrize("output", OUTPUTS)
def test_overwrite_whose_source_fails_keeps_yesterdays_table(tmp_path, output):
    sync(tmp_path, output, "overwrite", list(range(10)), generation=1, truncate=True)
    sync(tmp_path, output, "overwrite", [100, 101, 102], generation=2, truncate=True, completed=False)
    assert stored(tmp_path, output) == list(range(10)), "a 3-row sync that ended without COMPLETE replaces nothing"


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_state_is_released_mid_sync_once_its_records_are_stored(tmp_path, output):
    """The platform checkpoints while the source still reads: the first STATE must come out before
    the input ends, not with the last."""
    first_state_seen = threading.Event()
    stream = configured_stream(mode="append")

    def messages():
        yield record(review(1))
        yield state({"position": 1})
        if not first_state_seen.wait(timeout=20):
            raise AssertionError("the first STATE was held back until the input ended")
        yield record(review(2))
        yield state({"position": 2})
        yield complete()

    released = []
    for message in DestinationMistral().write(config_for(tmp_path, output), catalog(stream), messages()):
        if message.type == Type.STATE:
            released.append(message.state.stream.stream_state.position)
            first_state_seen.set()
    assert released == [1, 2]
    assert stored(tmp_path, output) == [1, 2]


@pytest.mark.parametrize("output", OUTPUTS)
def test_funky_stream_namespace_and_field_names_round_trip(tmp_path, output):
    name = "funky 'stream' \"name\" é💥-1"
    namespace = "ns with spaces"
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "field with spaces": {"type": "string"},
            "$dollar": {"type": "string"},
            "dot.field": {"type": "string"},
            "ünïcödé": {"type": "string"},
            'quote"d': {"type": "string"},
        },
    }
    data = {"id": 1, "field with spaces": "a", "$dollar": "b", "dot.field": "c", "ünïcödé": "d", 'quote"d': "e"}
    stream = configured_stream(name, mode="append_dedup", schema=schema, namespace=namespace)
    out = list(
        DestinationMistral().write(
            config_for(tmp_path, output),
            catalog(stream),
            [
                record(data, stream=name, namespace=namespace),
                state({"position": 1}, stream=name, namespace=namespace),
                complete(name, namespace),
            ],
        )
    )
    assert len(states(out)) == 1
    if output == "duckdb":
        con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
        row = con.execute(
            'SELECT "field with spaces", "$dollar", "dot.field", "ünïcödé", "quote""d" '
            f'FROM "{namespace}"."{name.replace(chr(34), chr(34) * 2)}"'
        ).fetchall()
        con.close()
        assert row == [("a", "b", "c", "d", "e")]
    else:
        files = list((tmp_path / "jsonl").rglob("*.jsonl"))
        assert len(files) == 1
        line = json.loads(files[0].read_text())
        assert {k: line[k] for k in data} == data


@pytest.mark.parametrize("output", OUTPUTS)
def test_dedup_without_cursor_keeps_the_last_record_to_arrive(tmp_path, output):
    texts = {1: "first", 2: "other"}
    sync(tmp_path, output, "append_dedup", [1, 2], generation=1, texts=texts)
    sync(tmp_path, output, "append_dedup", [1], generation=2, texts={1: "second"})
    assert stored(tmp_path, output, column="review") == ["other", "second"]


@pytest.mark.parametrize("output", OUTPUTS)
def test_dedup_keeps_each_record_without_a_key_as_its_own_row(tmp_path, output):
    stream = configured_stream(mode="append_dedup")
    rows = [
        review(1, "a"),
        {**review(2, "b"), "id": None},
        {k: v for k, v in review(3, "c").items() if k != "id"},
        {**review(4, "d"), "id": None},
        review(1, "e"),
    ]
    messages = [record(r) for r in rows] + [state({"position": 5}), complete()]
    out = list(DestinationMistral().write(config_for(tmp_path, output), catalog(stream), messages))
    assert len(states(out)) == 1
    assert stored(tmp_path, output, column="review") == ["b", "c", "d", "e"], "keyless records are never merged"


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("names", [("Users", "users"), ("a b", "a_b")])
def test_streams_written_to_the_same_place_are_a_config_error_naming_both(tmp_path, output, names):
    if output == "duckdb" and names == ("a b", "a_b"):
        names = ("Orders", "ORDERS")  # DuckDB quotes any name: only case collides there
    streams = [configured_stream(n, mode="append") for n in names]
    with pytest.raises(AirbyteTracedException) as caught:
        list(DestinationMistral().write(config_for(tmp_path, output), catalog(*streams), [complete(names[0])]))
    assert caught.value.failure_type.value == "config_error"
    assert names[0] in caught.value.message and names[1] in caught.value.message


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("name", ["_airbyte_tmp_users", "_mistral_cache", "_MISTRAL_generations", "_mistral_batch"])
def test_a_stream_named_like_the_outputs_own_tables_is_a_config_error_and_nothing_is_replaced(tmp_path, output, name):
    """A stream named like another stream's staging copy or the cache would replace it (or be
    replaced), losing rows a STATE covered or the answers paid for."""
    config = config_for(tmp_path, output)
    kept = [record(review(1)), state({"position": 1}), complete()]
    list(DestinationMistral().write(config, catalog(configured_stream(mode="append")), kept))
    before = stored(tmp_path, output, column="review")
    with pytest.raises(AirbyteTracedException) as caught:
        list(DestinationMistral().write(config, catalog(configured_stream(name, mode="overwrite")), [complete(name)]))
    assert caught.value.failure_type.value == "config_error"
    assert name in caught.value.message and "rename the stream" in caught.value.message
    assert stored(tmp_path, output, column="review") == before


def test_source_meta_changes_are_kept_beside_ours(tmp_path):
    data = review(1)
    message = record(data)
    from airbyte_cdk.models.airbyte_protocol import (
        AirbyteRecordMessageMeta,
        AirbyteRecordMessageMetaChange,
        Change,
        Reason,
    )

    message.record.meta = AirbyteRecordMessageMeta(
        changes=[
            AirbyteRecordMessageMetaChange(
                field="review", change=Change.TRUNCATED, reason=Reason.SOURCE_FIELD_SIZE_LIMITATION
            )
        ]
    )
    message_b = record({**review(2), "rating": "five"})
    list(
        DestinationMistral().write(
            config_for(tmp_path, "duckdb"),
            catalog(configured_stream()),
            [message, message_b, state({"position": 2}), complete()],
        )
    )
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    metas = [json.loads(r[0]) for r in con.execute("SELECT _airbyte_meta FROM reviews ORDER BY id").fetchall()]
    con.close()
    assert metas[0]["changes"] == [{"field": "review", "change": "TRUNCATED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"}]
    assert metas[1]["changes"] == [{"field": "rating", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}]


@pytest.mark.parametrize("output", OUTPUTS)
def test_an_emitted_at_no_output_can_hold_is_stamped_and_noted_not_a_failed_batch(tmp_path, output):
    stream = configured_stream(mode="append")
    messages = [
        record(review(1)),
        record(review(2), emitted_at=10**19),
        record(review(3)),
        state({"position": 3}),
        complete(),
    ]
    out = list(DestinationMistral().write(config_for(tmp_path, output), catalog(stream), messages))
    assert len(states(out)) == 1
    assert stored(tmp_path, output) == [1, 2, 3]
    if output == "duckdb":
        con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
        changes = [json.loads(r[0]) for r in con.execute("SELECT _airbyte_meta FROM reviews").fetchall()]
        con.close()
    else:
        changes = [
            json.loads(line)["_airbyte_meta"]
            for line in (tmp_path / "jsonl" / "reviews.jsonl").read_text().splitlines()
        ]
    assert (
        sum(
            c["changes"]
            == [{"field": "_airbyte_extracted_at", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}]
            for c in changes
        )
        == 1
    )


def test_a_record_after_its_streams_complete_status_is_a_config_error(tmp_path):
    with pytest.raises(AirbyteTracedException, match="after the stream's COMPLETE"):
        list(
            DestinationMistral().write(
                config_for(tmp_path, "duckdb"),
                catalog(configured_stream()),
                [record(review(1)), complete(), record(review(2))],
            )
        )


# ---- cases found by trying the connector from outside ------------------------------------------


def test_a_fraction_in_an_integer_key_is_nulled_and_named_never_merged_with_another_key(tmp_path):
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "text": {"type": "string"}}}
    stream = configured_stream("s", mode="append_dedup", schema=schema)
    messages = [
        record({"id": 2, "text": "two"}, stream="s"),
        record({"id": 1.5, "text": "one and a half"}, stream="s"),
        state({"position": 2}, stream="s"),
        complete("s"),
    ]
    list(DestinationMistral().write(config_for(tmp_path, "duckdb"), catalog(stream), messages))
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    rows = con.execute("SELECT id, text, _airbyte_meta FROM s ORDER BY text").fetchall()
    con.close()
    assert [(r[0], r[1]) for r in rows] == [(None, "one and a half"), (2, "two")], "1.5 is not 2"
    assert json.loads(rows[0][2])["changes"] == [
        {"field": "id", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
    ]


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_complete_status_sent_twice_swaps_once(tmp_path, output):
    sync(tmp_path, output, "overwrite", [1], generation=1, truncate=True)
    stream = configured_stream(mode="overwrite", generation_id=2, minimum_generation_id=2)
    list(
        DestinationMistral().write(
            config_for(tmp_path, output),
            catalog(stream),
            [record(review(2)), state({"position": 1}), complete(), complete()],
        )
    )
    assert stored(tmp_path, output) == [2]


def test_a_stream_name_too_long_for_a_file_name_gets_a_shortened_file_of_its_own(tmp_path):
    names = ["x" * 300, "x" * 299 + "y"]
    streams = [configured_stream(n, mode="append") for n in names]
    messages = [record(review(i), stream=n) for i, n in enumerate(names)] + [state({"position": 2}, stream=names[0])]
    out = list(DestinationMistral().write(config_for(tmp_path, "jsonl"), catalog(*streams), messages))
    assert len(states(out)) == 1
    files = sorted((tmp_path / "jsonl").glob("*.jsonl"))
    assert len(files) == 2 and all(len(f.name.encode()) <= 255 for f in files), [f.name for f in files]


def test_nan_and_infinity_are_stored_as_null_and_named_in_the_meta(tmp_path):
    lines = [
        b'{"type":"RECORD","record":{"stream":"reviews","data":{"id":1,"rating":NaN,"tags":[1,Infinity]},"emitted_at":1700000000000}}',
        b'{"type":"RECORD","record":{"stream":"reviews","data":{"id":2,"rating":3},"emitted_at":"yesterday"}}',
        b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"reviews"},"stream_state":{"p":1}}}}',
    ]
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

    from destination_mistral.sync.runner import write_stream

    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(
        json.dumps(ConfiguredAirbyteCatalogSerializer.dump(catalog(configured_stream(mode="append"))))
    )
    out = list(write_stream(config_for(tmp_path, "duckdb"), str(catalog_path), [line + b"\n" for line in lines]))
    assert len(out) == 1
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    rows = con.execute("SELECT id, rating, tags, _airbyte_meta FROM reviews ORDER BY id").fetchall()
    con.close()
    assert rows[0][1] is None and json.loads(rows[0][2]) == [1, None]
    assert {c["field"] for c in json.loads(rows[0][3])["changes"]} == {"rating", "tags"}
    assert json.loads(rows[1][3])["changes"] == [
        {"field": "_airbyte_extracted_at", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
    ]


def test_each_stream_state_reports_the_records_of_its_own_stream(tmp_path):
    """destinationStats.recordCount of a STREAM state counts that stream's records since it was last
    covered, as the source's sourceStats does, so that the platform's comparison of the two holds
    when streams interleave."""
    streams = [configured_stream("reviews", mode="append"), configured_stream("orders", mode="append")]
    messages = [record(review(i), stream="reviews" if i < 7 else "orders") for i in range(10)]
    messages += [state({"p": 1}, stream="reviews"), state({"p": 1}, stream="orders")]
    messages += [record(review(10), stream="orders"), state({"p": 2}, stream="orders")]
    messages += [state({"p": 2}, stream="reviews"), complete("reviews"), complete("orders")]
    out = list(DestinationMistral().write(config_for(tmp_path, "duckdb"), catalog(*streams), messages))
    counts = [(m.state.stream.stream_descriptor.name, m.state.destinationStats.recordCount) for m in states(out)]
    assert counts == [("reviews", 7), ("orders", 3), ("orders", 1), ("reviews", 0)]
