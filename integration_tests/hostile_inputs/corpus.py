"""The hostile and broken inputs: each case is one thing a real sync can meet, and what the
destination must answer. Outcomes:

- `config_error`: the sync stops with a config_error TRACE whose message contains `expect`; the
  records before the bad line are committed and their STATE echoed; an earlier sync's rows remain.
- `record_error`: the sync succeeds; the hostile record (id 50) is written with an error containing
  `expect`; the records around it are enriched.
- `ok`: the sync succeeds and record 50 is written with a result (what could not be kept as it was,
  such as invalid characters, is replaced).
- `meta`: the sync succeeds; record 50's `_airbyte_meta` names the field `expect` that did not fit
  its column.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from integration_tests.hostile_inputs.harness import (
    RECORD_MARK,
    Capture,
    catalog_dict,
    chat_config,
    embed_config,
    input_lines,
    output_files,
    query,
    record_line,
    review,
    write_in_process,
)

HOSTILE_ID = 50


@dataclass(frozen=True)
class Case:
    name: str
    outcome: str  # config_error | record_error | ok | meta
    expect: str = ""
    lines: tuple[bytes, ...] = ()  # inserted between the first and the second batch of good records
    config: Callable[[str, Path], dict[str, Any] | bytes] | None = None
    catalog: Any = None  # a dict, raw bytes, or None for the default catalog
    fails_before_input: bool = False  # a config or catalog problem: found before any record is read
    every_record: bool = False  # the problem is in the config: every record gets the error, not only record 50


def _record(**changes: Any) -> bytes:
    data = review(HOSTILE_ID)
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return record_line(data)


_DROP = object()


def _with(base: Callable[[str, Path], dict], **changes: Any) -> Callable[[str, Path], dict]:
    def build(url: str, out: Path) -> dict:
        config = base(url, out)
        for dotted, value in changes.items():
            target = config
            *parents, last = dotted.split("__")
            for name in parents:
                target = target.setdefault(name, {})
            if value is _DROP:
                target.pop(last, None)
            else:
                target[last] = value
        return config

    return build


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def _raw_record_with_text(text_bytes: bytes) -> bytes:
    data = review(HOSTILE_ID)
    line = orjson.dumps({"type": "RECORD", "record": {"stream": "reviews", "data": data, "emitted_at": 1}})
    return line.replace(f"review {HOSTILE_ID}:".encode(), b"review 50: " + text_bytes, 1) + b"\n"


# Only the field itself: a null, empty or blank field leaves nothing to send.
_BARE_TEMPLATE = _with(chat_config, enrichment__prompt_template="{{ review }}")

INTERNALS = [
    "{{ review.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ joiner.__init__.__globals__['os'].popen('id').read() }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ self._TemplateReference__context }}",
    "{{ 'x' * 10000000000 }}",
    "{{ 2 ** 100000000 }}",
]

CASES: list[Case] = [
    # ---- the input stream ----
    Case(
        "malformed_json_line",
        "config_error",
        "is not valid JSON",
        (b'{"type": "RECORD", "record": {"stream": "reviews", "data": {"id": 9\n',),
    ),
    Case("plain_text_line", "config_error", "is not valid JSON", (b"this is not a message\n",)),
    Case("unknown_message_type", "config_error", "message type 'FOO'", (b'{"type": "FOO", "foo": {}}\n',)),
    Case(
        "message_without_type",
        "config_error",
        "message type missing",
        (orjson.dumps({"record": {"stream": "reviews", "data": {}}}) + b"\n",),
    ),
    Case(
        "log_message_is_ignored",
        "ok",
        "",
        (b'{"type": "LOG", "log": {"level": "INFO", "message": "hello"}}\n', _record()),
    ),
    Case(
        "invalid_state_message",
        "config_error",
        "STATE message that is not valid",
        (b'{"type": "STATE", "state": {"type": "BOGUS"}}\n',),
    ),
    Case(
        "stream_not_in_catalog",
        "config_error",
        "not in the configured catalog",
        (record_line(review(HOSTILE_ID), stream="elsewhere"),),
    ),
    Case(
        "namespace_not_in_catalog",
        "config_error",
        "not in the configured catalog",
        (record_line(review(HOSTILE_ID), namespace="other"),),
    ),
    Case("record_data_is_an_array", "config_error", "an array as its data", (record_line([1, 2, 3]),)),
    Case("record_data_is_null", "config_error", "null as its data", (record_line(None),)),
    Case("record_data_is_a_string", "config_error", "a string as its data", (record_line(RECORD_MARK),)),
    Case("record_message_without_record", "config_error", "`record` is null", (b'{"type": "RECORD"}\n',)),
    Case(
        "record_without_stream",
        "config_error",
        "without a stream name",
        (orjson.dumps({"type": "RECORD", "record": {"data": {}}}) + b"\n",),
    ),
    # ---- record contents against the template ----
    Case("template_field_missing", "record_error", "'review' is undefined", (_record(review=_DROP),)),
    Case("null_text", "record_error", "prompt is empty", (_record(review=None),), config=_BARE_TEMPLATE),
    Case("empty_text", "record_error", "prompt is empty", (_record(review=""),), config=_BARE_TEMPLATE),
    Case("whitespace_text", "record_error", "prompt is empty", (_record(review=" \n\t  "),), config=_BARE_TEMPLATE),
    Case(
        "embeddings_null_text",
        "record_error",
        "none of the fields to embed",
        (_record(review=None),),
        config=embed_config,
    ),
    Case(
        "embeddings_empty_text",
        "record_error",
        "the text to embed is empty",
        (_record(review=""),),
        config=embed_config,
    ),
    Case(
        "embeddings_whitespace_text",
        "record_error",
        "the text to embed is empty",
        (_record(review="   \n "),),
        config=embed_config,
    ),
    Case(
        "chat_text_beyond_context",
        "record_error",
        "over max_input_tokens",
        (_record(review="word " * 40_000),),
        config=_with(chat_config, enrichment__max_input_tokens=32_000),
    ),
    Case(
        "chat_text_beyond_context_truncated",
        "ok",
        "",
        (_record(review="word " * 40_000),),
        config=_with(chat_config, enrichment__max_input_tokens=32_000, enrichment__input_too_long="truncate"),
    ),
    Case(
        "embeddings_text_beyond_context_truncated", "ok", "", (_record(review="word " * 40_000),), config=embed_config
    ),
    Case(
        "embeddings_text_beyond_context_error",
        "record_error",
        "over max_input_tokens",
        (_record(review="word " * 40_000),),
        config=_with(embed_config, enrichment__input_too_long="error"),
    ),
    # ---- characters and structure ----
    Case("invalid_utf8_bytes", "ok", "", (_raw_record_with_text(b"\xff\xfe\xc3("),)),
    Case("lone_surrogate_escape", "ok", "", (_raw_record_with_text(b"\\ud800 and \\udfff"),)),
    Case("nul_and_control_characters", "ok", "", (_record(review="a\u0000b\u0007c\u001b[31m"),)),
    Case("right_to_left_and_emoji", "ok", "", (_record(review="\u202eevil\u202c \U0001f600 \u00e9"),)),
    Case("nested_300_levels", "config_error", "nested more than 254 levels", (_record(tags=_nested(300)),)),
    Case(
        "nested_5000_levels",
        "config_error",
        "nested too deeply",
        (
            b'{"type": "RECORD", "record": {"stream": "reviews", "data": {"id": 50, "x": '
            + b"[" * 5000
            + b"]" * 5000
            + b"}}}\n",
        ),
    ),
    Case("nested_100_levels_is_stored", "ok", "", (_record(tags=_nested(100)),)),
    Case(
        "reserved_column_names",
        "ok",
        "",
        (_record(_mistral_answer="forged", _airbyte_raw_id="forged", _mistral_error="forged"),),
    ),
    Case("duplicate_json_keys", "ok", "", (record_line(review(HOSTILE_ID))[:-3] + b', "id": 50}}\n',)),
    # ---- records against the schema ----
    Case("number_as_string_is_cast", "ok", "", (_record(rating="4"),)),
    Case("string_for_integer", "meta", "rating", (_record(rating="five"),)),
    Case("boolean_for_integer", "meta", "rating", (_record(rating=True),)),
    Case("object_for_timestamp", "meta", "reviewed_at", (_record(reviewed_at={"at": "noon"}),)),
    Case("invalid_timestamp_text", "meta", "reviewed_at", (_record(reviewed_at="yesterday-ish"),)),
    Case("string_for_array", "ok", "", (_record(tags="not-a-list"),)),
    Case("huge_integer", "meta", "rating", (_record(rating=10**30),)),
    Case("unknown_extra_fields", "ok", "", (_record(surprise={"a": [1, 2]}, other=None),)),
    # ---- templates reaching for Python internals ----
    *[
        Case(
            f"template_internals_{i}",
            "record_error",
            "blocked by the sandbox",
            (_record(),),
            config=_with(chat_config, enrichment__prompt_template=template),
            every_record=True,
        )
        for i, template in enumerate(INTERNALS)
    ],
    # ---- the catalog ----
    Case("catalog_not_json", "config_error", "catalog", catalog=b"{streams: nope", fails_before_input=True),
    Case(
        "catalog_without_streams",
        "config_error",
        "no `streams` list",
        catalog={"streams": None},
        fails_before_input=True,
    ),
    Case(
        "catalog_stream_without_schema",
        "config_error",
        "json_schema",
        catalog={
            "streams": [{"stream": {"name": "reviews"}, "sync_mode": "full_refresh", "destination_sync_mode": "append"}]
        },
        fails_before_input=True,
    ),
    Case(
        "catalog_schema_properties_not_object",
        "config_error",
        "not an object",
        catalog={
            "streams": [
                {
                    "stream": {
                        "name": "reviews",
                        "json_schema": {"properties": [1]},
                        "supported_sync_modes": ["full_refresh"],
                    },
                    "sync_mode": "full_refresh",
                    "destination_sync_mode": "append",
                }
            ]
        },
        fails_before_input=True,
    ),
    Case(
        "catalog_unknown_sync_mode",
        "config_error",
        "catalog",
        catalog={
            "streams": [
                {
                    "stream": {"name": "reviews", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                    "sync_mode": "full_refresh",
                    "destination_sync_mode": "upsert_maybe",
                }
            ]
        },
        fails_before_input=True,
    ),
    Case(
        "catalog_dedup_without_primary_key",
        "config_error",
        "no primary key",
        catalog={
            "streams": [
                {
                    "stream": {
                        "name": "reviews",
                        "json_schema": {"properties": {"id": {"type": "integer"}}},
                        "supported_sync_modes": ["full_refresh"],
                    },
                    "sync_mode": "full_refresh",
                    "destination_sync_mode": "append_dedup",
                }
            ]
        },
        fails_before_input=True,
    ),
    Case("catalog_stream_listed_twice", "config_error", "twice", catalog="twice", fails_before_input=True),
    # ---- every config field wrong in turn ----
    Case(
        "config_not_json", "config_error", "config file", config=lambda url, out: b"{not json", fails_before_input=True
    ),
    Case(
        "config_missing_key",
        "config_error",
        "api_key",
        config=_with(chat_config, api_key=_DROP),
        fails_before_input=True,
    ),
    Case(
        "config_blank_key", "config_error", "api_key", config=_with(chat_config, api_key="   "), fails_before_input=True
    ),
    Case(
        "config_wrong_key",
        "config_error",
        "rejected the API key",
        config=_with(chat_config, api_key="sk-wrong-000"),
        fails_before_input=True,
    ),
    Case(
        "config_unknown_model",
        "config_error",
        "refused the model",
        config=_with(chat_config, model="mistral-smal-latest"),
        fails_before_input=True,
    ),
    Case(
        "config_model_without_chat",
        "config_error",
        "completion_chat capability",
        config=_with(chat_config, model="mistral-embed"),
        fails_before_input=True,
    ),
    Case(
        "config_model_without_embeddings",
        "config_error",
        "embeddings capability",
        config=_with(embed_config, enrichment__model="mistral-small-latest"),
        fails_before_input=True,
    ),
    Case(
        "config_plain_http_remote_url",
        "config_error",
        "plain http",
        config=_with(chat_config, base_url="http://api.mistral.ai"),
        fails_before_input=True,
    ),
    Case(
        "config_url_with_credentials",
        "config_error",
        "must not carry credentials",
        config=_with(chat_config, base_url="https://user:pw@api.mistral.ai"),
        fails_before_input=True,
    ),
    Case(
        "config_url_not_http",
        "config_error",
        "not an http(s) URL",
        config=_with(chat_config, base_url="ftp://api.mistral.ai"),
        fails_before_input=True,
    ),
    Case(
        "config_unwritable_duckdb_path",
        "config_error",
        "output.path",
        config=_with(chat_config, output__path="/proc/forbidden/out.duckdb"),
        fails_before_input=True,
    ),
    Case(
        "config_unwritable_jsonl_directory",
        "config_error",
        "output.directory",
        config=_with(chat_config, output={"type": "jsonl", "directory": "/proc/forbidden"}),
        fails_before_input=True,
    ),
    Case(
        "config_bad_template",
        "config_error",
        "not a valid Jinja template",
        config=_with(chat_config, enrichment__prompt_template="{{ review "),
        fails_before_input=True,
    ),
    Case(
        "config_empty_template",
        "config_error",
        "prompt_template",
        config=_with(chat_config, enrichment__prompt_template=""),
        fails_before_input=True,
    ),
    Case(
        "config_schema_not_json",
        "config_error",
        "not valid JSON",
        config=_with(chat_config, enrichment__response_format={"type": "json_schema", "schema": "{type: object"}),
        fails_before_input=True,
    ),
    Case(
        "config_schema_invalid",
        "config_error",
        "not a valid JSON schema",
        config=_with(
            chat_config, enrichment__response_format={"type": "json_schema", "schema": json.dumps({"type": 12})}
        ),
        fails_before_input=True,
    ),
    Case(
        "config_unknown_mode",
        "config_error",
        "enrichment.mode",
        config=_with(chat_config, enrichment__mode="translate"),
        fails_before_input=True,
    ),
    Case(
        "config_temperature_out_of_range",
        "config_error",
        "temperature",
        config=_with(chat_config, enrichment__temperature=7),
        fails_before_input=True,
    ),
    Case(
        "config_negative_retries",
        "config_error",
        "max_retries",
        config=_with(chat_config, limits={"max_retries": -1}),
        fails_before_input=True,
    ),
    Case(
        "config_unknown_on_error",
        "config_error",
        "on_error",
        config=_with(chat_config, on_error="ignore"),
        fails_before_input=True,
    ),
    Case(
        "config_fields_and_template",
        "config_error",
        "not both",
        config=_with(embed_config, enrichment__template="{{ review }}"),
        fails_before_input=True,
    ),
    Case(
        "config_motherduck_path",
        "config_error",
        "MotherDuck",
        config=_with(chat_config, output__path="md:my_db"),
        fails_before_input=True,
    ),
]

BY_NAME = {case.name: case for case in CASES}


def _catalog_for(case: Case) -> Any:
    if case.catalog is None:
        return catalog_dict()
    if case.catalog == "twice":
        single = catalog_dict()
        return {"streams": single["streams"] * 2}
    return case.catalog


def earlier_sync(workdir: Path, base_url: str) -> tuple[Path, Capture]:
    """A good sync of records 100-102: the committed data that no hostile input may lose."""
    out = workdir / "out.duckdb"
    earlier = write_in_process(
        "earlier sync",
        workdir / "earlier",
        chat_config(base_url, out),
        catalog_dict(),
        input_lines([review(i) for i in range(100, 103)], every=3, start=100),
    )
    assert earlier.returncode == 0 and not earlier.errors, earlier.describe()
    earlier.files = output_files(out)
    return out, earlier


def run_case(case: Case, workdir: Path, base_url: str, earlier: tuple[Path, Capture] | None = None) -> list[Capture]:
    """Runs one hostile case into the output of an earlier good sync (a copy of it, when given), and
    checks the outcome."""
    if earlier is None:
        earlier = earlier_sync(workdir / "first", base_url)
    out = workdir / "out.duckdb"
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(earlier[0], out)
    config = (case.config or chat_config)(base_url, out)
    lines = (
        input_lines([review(i) for i in range(3)], every=3, completed=False)
        + list(case.lines)
        + input_lines([review(i) for i in range(3, 6)], every=3, start=3)
    )
    capture = write_in_process(case.name, workdir / "hostile", config, _catalog_for(case), lines)
    capture.files = output_files(workdir)
    _check(case, capture, out)
    return [earlier[1], capture]


def _check(case: Case, capture: Capture, out: Path) -> None:
    where = capture.describe()
    assert "Traceback" not in capture.stderr, f"{case.name}: a bare traceback reached stderr\n{where}"
    system = [e for e in capture.errors if e.get("failure_type") != "config_error"]
    assert not system, f"{case.name}: expected no error other than a config_error, got {system}\n{where}"
    if out.exists():
        earlier = {r[0] for r in query(out, "SELECT id FROM reviews WHERE id >= 100")}
        assert earlier == {100, 101, 102}, f"{case.name}: the earlier sync's rows were lost: {earlier}"
    if case.outcome == "config_error":
        assert capture.errors, f"{case.name}: the sync should stop with a config error\n{where}"
        message = capture.errors[0]["message"]
        assert case.expect in message, f"{case.name}: the error should say {case.expect!r}, got {message!r}"
        assert capture.returncode != 0, f"{case.name}: a failed sync must not exit 0"
        if not case.fails_before_input:
            positions = [m["state"]["stream"]["stream_state"]["position"] for m in capture.states]
            assert positions == [3], (
                f"{case.name}: the STATE of the records before the bad line should be echoed: {positions}"
            )
            ids = {r[0] for r in query(out, "SELECT id FROM reviews WHERE id < 100")}
            assert ids == {0, 1, 2}, (
                f"{case.name}: the records before the bad line should be committed, and only they: {ids}"
            )
        return
    assert capture.returncode == 0 and not capture.errors, f"{case.name}: the sync should succeed\n{where}"
    positions = [m["state"]["stream"]["stream_state"]["position"] for m in capture.states]
    assert positions == [3, 6], f"{case.name}: every STATE should be echoed: {positions}"
    rows = query(out, "SELECT id, _mistral_error, _airbyte_meta FROM reviews WHERE id < 100 ORDER BY id")
    by_id = {row[0]: row for row in rows}
    assert set(by_id) == {0, 1, 2, 3, 4, 5, HOSTILE_ID} - (
        {HOSTILE_ID}
        if not case.lines or case.lines[0].startswith(b'{"type": "LOG"') and len(case.lines) == 1
        else set()
    ), f"{case.name}: every record exactly once: {sorted(by_id)}"
    hostile = by_id[HOSTILE_ID]
    if case.every_record:
        assert all(row[1] and case.expect in row[1] for row in rows), (
            f"{case.name}: every record should carry the error: {rows}"
        )
        return
    assert all(by_id[i][1] is None for i in range(6)), (
        f"{case.name}: the good records around it should be enriched: {rows}"
    )
    if case.outcome == "record_error":
        assert hostile[1] and case.expect in hostile[1], (
            f"{case.name}: the record's error should say {case.expect!r}, got {hostile[1]!r}"
        )
    elif case.outcome == "ok":
        assert hostile[1] is None, f"{case.name}: the record should be enriched, got error {hostile[1]!r}"
    elif case.outcome == "meta":
        changes = json.loads(hostile[2])["changes"]
        assert [c["field"] for c in changes] == [case.expect], (
            f"{case.name}: _airbyte_meta should name {case.expect!r}: {changes}"
        )
        assert hostile[1] is None, f"{case.name}: a schema mismatch is not an enrichment error: {hostile[1]!r}"
