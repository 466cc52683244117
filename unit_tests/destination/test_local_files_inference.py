"""What `destination-mistral load` infers from a plain file: each field's type, its empty values, the
primary key and the sync mode, and the values it hands to the write path. The README's "Feeding your
own records" states these rules; a change here is a change to what users' tables look like."""

from __future__ import annotations

import json

import pytest

from destination_mistral.local_files.command import LoadPlan, parse_load_args, survey
from destination_mistral.local_files.records import RowReader, open_local_file
from destination_mistral.protocol.messages import Record


def plan_for(tmp_path, name: str, content: bytes | str, *options: str) -> LoadPlan:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return survey(parse_load_args(["--config", "unused.json", "--file", str(path), *options]))


def types(plan: LoadPlan) -> dict:
    return {name: prop["type"] for name, prop in plan.json_schema["properties"].items()}


def records(plan: LoadPlan) -> list[dict]:
    return [m.data for m in plan.messages(state_every=1000) if isinstance(m, Record)]


def test_csv_columns_take_the_type_every_cell_parses_as(tmp_path):
    plan = plan_for(
        tmp_path,
        "items.csv",
        "id,price,in_stock,name,score\n1,9.5,true,Lamp,3\n2,10,FALSE,Desk,-4e2\n3,0.25,True,Chair,7\n",
    )
    assert types(plan) == {
        "id": "integer",
        "price": "number",
        "in_stock": "boolean",
        "name": "string",
        "score": "number",
    }, "integers and fractions together make a number column; booleans are true/false in any case"
    assert records(plan)[1] == {"id": 2, "price": 10.0, "in_stock": False, "name": "Desk", "score": -400.0}


def test_csv_column_with_one_cell_of_text_stays_text(tmp_path):
    plan = plan_for(tmp_path, "mixed.csv", "id,code,flag\n1,12,true\n2,A7,1\n3,14,false\n")
    assert types(plan)["code"] == "string", "one cell that is not a number keeps the whole column text"
    assert types(plan)["flag"] == "string", "1 is not a boolean: true/false and numbers do not mix"
    assert [r["code"] for r in records(plan)] == ["12", "A7", "14"], "text columns keep every cell as written"


@pytest.mark.parametrize(
    "cell",
    ["007", " 5", "5 ", "1,5", "1e999", "NaN", "inf", "12345678901234567890", "٣", "１２", "0x1F", "1_000"],
)
def test_csv_cells_that_do_not_parse_cleanly_keep_the_column_text(tmp_path, cell):
    """Codes with leading zeros, padded cells, numbers past 64 bits (account numbers a float would
    round), other scripts' digits: a person's text, not a number."""
    content = 'id,value\n1,"' + cell + '"\n2,3\n'
    plan = plan_for(tmp_path, "cells.csv", content)
    assert types(plan)["value"] == "string", f"{cell!r} must not make a number column"
    assert records(plan)[0]["value"] == cell


def test_empty_csv_cells_are_null_and_do_not_decide_the_type(tmp_path):
    plan = plan_for(tmp_path, "gaps.csv", "id,rating,note,empty\n1,,hello,\n2,4,,\n3,5,,\n")
    assert types(plan) == {
        "id": "integer",
        "rating": ["null", "integer"],
        "note": ["null", "string"],
        "empty": ["null", "string"],
    }
    assert records(plan)[0] == {"id": 1, "rating": None, "note": "hello", "empty": None}


def test_quoted_commas_quotes_and_line_breaks_stay_inside_their_cell(tmp_path):
    content = 'id,review\n1,"Loud, clear; ""great"" value"\n2,"first line\nsecond line"\n3,plain\n'
    plan = plan_for(tmp_path, "quoted.csv", content)
    assert [r["review"] for r in records(plan)] == [
        'Loud, clear; "great" value',
        "first line\nsecond line",
        "plain",
    ]
    rows = list(RowReader(open_local_file(str(tmp_path / "quoted.csv"), None)))
    assert [row.line for row in rows] == [2, 3, 5], "a record is named by the line it starts on"


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    csv_plan = plan_for(tmp_path, "excel.csv", b"\xef\xbb\xbfid,name\r\n1,Caf\xc3\xa9\r\n")
    assert list(types(csv_plan)) == ["id", "name"], "spreadsheets write a BOM before the header"
    assert csv_plan.primary_key == ["id"]
    jsonl_plan = plan_for(
        tmp_path, "notepad.jsonl", b'\xef\xbb\xbf{"id": 1, "name": "x"}\r\n{"id": 2, "name": "y"}\r\n'
    )
    assert records(jsonl_plan) == [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}]


def test_unicode_names_and_values_are_kept_as_written(tmp_path):
    content = "id,produit,avis,note\n1,Écouteurs,Très bon son 🎧,5\n2,東京 lamp,Ça marche,4\n"
    plan = plan_for(tmp_path, "avis.csv", content)
    assert types(plan) == {"id": "integer", "produit": "string", "avis": "string", "note": "integer"}
    assert records(plan)[1] == {"id": 2, "produit": "東京 lamp", "avis": "Ça marche", "note": 4}


def test_jsonl_types_come_from_the_values(tmp_path):
    lines = [
        {"id": 1, "score": 1, "ok": True, "tags": ["a"], "meta": {"k": 1}, "mixed": 1, "note": "x"},
        {"id": 2, "score": 2.5, "ok": False, "tags": [], "meta": {}, "mixed": "one", "extra": "late"},
        {"id": 3, "score": None, "ok": True, "tags": ["b"], "meta": {"k": 2}, "mixed": 3, "note": None},
    ]
    plan = plan_for(tmp_path, "events.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    assert types(plan) == {
        "id": "integer",
        "score": ["null", "number"],
        "ok": "boolean",
        "tags": "array",
        "meta": "object",
        "mixed": ["integer", "string"],
        "note": ["null", "string"],
        "extra": ["null", "string"],
    }, "mixed types are listed (stored as JSON); a field missing from some records is nullable"
    assert records(plan)[0]["meta"] == {"k": 1}, "JSON Lines values go on as they were read"


def test_a_jsonl_integer_past_64_bits_is_text_so_that_no_integer_column_nulls_it(tmp_path):
    lines = [{"id": 1, "account": 12345678901234567890, "big": 2**64 - 1}, {"id": 2, "account": 5, "big": 2**63}]
    plan = plan_for(tmp_path, "accounts.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    assert types(plan) == {"id": "integer", "account": ["integer", "string"], "big": "string"}


def test_jsonl_nan_is_stored_as_null_and_named(tmp_path):
    plan = plan_for(tmp_path, "nan.jsonl", '{"id": 1, "x": NaN, "y": 2}\n')
    record = next(m for m in plan.messages(1000) if isinstance(m, Record))
    assert record.data == {"id": 1, "x": None, "y": 2}
    assert record.changes == [{"field": "x", "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"}]


def test_primary_key_and_sync_mode_defaults(tmp_path):
    keyed = plan_for(tmp_path, "keyed.csv", "id,text\n1,a\n2,b\n")
    assert (keyed.primary_key, keyed.sync_mode) == (["id"], "append_dedup"), "`id` in every record is the key"
    gaps = plan_for(tmp_path, "gaps.csv", "id,text\n1,a\n,b\n")
    assert (gaps.primary_key, gaps.sync_mode) == ([], "append"), "an `id` some records lack is not a key"
    none = plan_for(tmp_path, "none.jsonl", '{"text": "a"}\n')
    assert (none.primary_key, none.sync_mode) == ([], "append")
    given = plan_for(tmp_path, "given.csv", "sku,shop,text\n1,a,x\n1,b,y\n", "--primary-key", "sku, shop")
    assert given.primary_key == ["sku", "shop"]
    assert given.stream == "given", "the stream is named after the file"
    named = plan_for(tmp_path, "named.csv", "id\n1\n", "--stream", "reviews", "--sync-mode", "overwrite")
    assert (named.stream, named.sync_mode) == ("reviews", "overwrite")


def test_a_given_schema_replaces_inference_and_types_csv_cells(tmp_path):
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "rating": {"type": ["null", "number"]}}}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    plan = plan_for(tmp_path, "typed.csv", "id,rating\n001,4\n002,n/a\n", "--schema", str(tmp_path / "schema.json"))
    assert plan.json_schema == schema
    assert plan.primary_key == ["id"], "`id` in every record is the key with a given schema too"
    assert records(plan) == [
        {"id": "001", "rating": 4.0},
        {"id": "002", "rating": "n/a"},
    ], "a cell that is not of its type goes on as text: the write path stores NULL and names it in _airbyte_meta"
