"""`check` and `write` read a config through the one validation of destination_mistral.settings:
on every config of the table they accept together, or refuse together with the same message,
which names the field to fix. What they accept the spec's own JSON schema accepts too (the platform
validates configs against it), and what the spec refuses they refuse."""

from __future__ import annotations

import json

import jsonschema
import pytest

import destination_mistral.destination as destination_module
from destination_mistral.destination import DestinationMistral
from unit_tests.destination.config_commands import check_messages, offline_api, run_check, write_error  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("offline_api")

SCHEMA_TEXT = '{"type": "object", "properties": {"sentiment": {"type": "string"}}, "required": ["sentiment"]}'
CHAT = {"mode": "chat", "prompt_template": "Review of {{ product }}: {{ review }}"}
# A PostgreSQL output (no server is reached: every row using it is refused before connecting).
POSTGRES = {"type": "postgres", "host": "db.invalid", "database": "d", "username": "u", "password": "pw-agree-0000"}

# (id, what the config changes, whether the spec's JSON schema itself accepts it)
VALID = [
    ("chat", {"enrichment": CHAT}),
    (
        "chat_every_field",
        {
            "enrichment": {
                **CHAT,
                "system_prompt": "Be brief.",
                "model": "mistral-large-latest",
                "temperature": 0,
                "top_p": 0.5,
                "max_tokens": 100,
                "random_seed": 3,
                "safe_prompt": True,
                "max_input_tokens": 1000,
                "input_too_long": "truncate",
            }
        },
    ),
    ("json_object", {"enrichment": {**CHAT, "response_format": {"type": "json_object"}}}),
    (
        "json_schema",
        {
            "enrichment": {
                **CHAT,
                "response_format": {"type": "json_schema", "name": "facts-1", "schema": SCHEMA_TEXT, "strict": False},
            }
        },
    ),
    ("embeddings_fields", {"enrichment": {"mode": "embeddings", "fields": ["product", "review"]}}),
    (
        "embeddings_template",
        {"enrichment": {"mode": "embeddings", "template": "{{ product }}: {{ review }}", "output_dimension": 256}},
    ),
    ("none", {"enrichment": {"mode": "none"}}),
    (
        "override",
        {
            "enrichment": CHAT,
            "stream_overrides": [
                {"stream_name": "reviews", "enrichment": {"mode": "embeddings", "fields": ["review"]}}
            ],
        },
    ),
    (
        "limits_and_delivery",
        {
            "enrichment": CHAT,
            "on_error": "fail",
            "cache": {"enabled": False},
            "limits": {
                "max_concurrent_requests": 4,
                "requests_per_second": 2.5,
                "tokens_per_minute": 1000,
                "max_retries": 0,
                "max_retry_seconds": 0,
                "timeout_seconds": 5,
                "max_response_mb": 1,
                "max_buffer_mb": 8,
            },
            "delivery": {"mode": "auto", "auto_threshold": 0, "requests_per_job": 5, "poll_max_seconds": 1},
        },
    ),
    ("whole_number_written_as_float", {"enrichment": {**CHAT, "max_tokens": 100.0}}),
    ("random_seed_largest", {"enrichment": {**CHAT, "random_seed": 2**63 - 1}}),
    (
        "output_dimension_largest",
        {"enrichment": {"mode": "embeddings", "fields": ["review"], "output_dimension": 3072}},
    ),
]

# (id, what the config changes, the field the message must name, whether the spec's JSON schema refuses it too)
INVALID = [
    # Passed `write` and failed `check` with a dump of the config before both used the spec.
    (
        "schema_as_object",
        {"enrichment": {**CHAT, "response_format": {"type": "json_schema", "schema": json.loads(SCHEMA_TEXT)}}},
        "enrichment.response_format.schema",
        True,
    ),
    # The spec's pattern for the schema's name, which `write` did not enforce.
    (
        "schema_name_pattern",
        {
            "enrichment": {
                **CHAT,
                "response_format": {"type": "json_schema", "name": "my schema!", "schema": SCHEMA_TEXT},
            }
        },
        "enrichment.response_format.name",
        True,
    ),
    (
        "schema_not_json",
        {"enrichment": {**CHAT, "response_format": {"type": "json_schema", "schema": "{type: object"}}},
        "enrichment.response_format.schema",
        False,
    ),
    (
        "schema_not_a_schema",
        {"enrichment": {**CHAT, "response_format": {"type": "json_schema", "schema": '{"type": 5}'}}},
        "enrichment.response_format.schema",
        False,
    ),
    (
        "schema_missing",
        {"enrichment": {**CHAT, "response_format": {"type": "json_schema"}}},
        "enrichment.response_format.schema",
        True,
    ),
    (
        "response_format_as_text",
        {"enrichment": {**CHAT, "response_format": "json_object"}},
        "enrichment.response_format",
        True,
    ),
    (
        "response_format_unknown",
        {"enrichment": {**CHAT, "response_format": {"type": "yaml"}}},
        "enrichment.response_format.type",
        True,
    ),
    ("enrichment_missing", {}, "enrichment", True),
    ("mode_missing", {"enrichment": {"prompt_template": "x"}}, "enrichment.mode", True),
    ("mode_unknown", {"enrichment": {"mode": "rerank"}}, "enrichment.mode", True),
    ("prompt_missing", {"enrichment": {"mode": "chat"}}, "enrichment.prompt_template", True),
    ("prompt_blank", {"enrichment": {"mode": "chat", "prompt_template": "  "}}, "enrichment.prompt_template", False),
    ("prompt_not_text", {"enrichment": {"mode": "chat", "prompt_template": ["x"]}}, "enrichment.prompt_template", True),
    (
        "prompt_not_jinja",
        {"enrichment": {"mode": "chat", "prompt_template": "{{ review "}},
        "enrichment.prompt_template",
        False,
    ),
    ("system_not_jinja", {"enrichment": {**CHAT, "system_prompt": "{% if %}"}}, "enrichment.system_prompt", False),
    ("temperature_too_high", {"enrichment": {**CHAT, "temperature": 3}}, "enrichment.temperature", True),
    ("top_p_zero", {"enrichment": {**CHAT, "top_p": 0}}, "enrichment.top_p", True),
    ("max_tokens_fraction", {"enrichment": {**CHAT, "max_tokens": 2.5}}, "enrichment.max_tokens", True),
    ("max_tokens_text", {"enrichment": {**CHAT, "max_tokens": "100"}}, "enrichment.max_tokens", True),
    ("safe_prompt_text", {"enrichment": {**CHAT, "safe_prompt": "yes"}}, "enrichment.safe_prompt", True),
    ("input_too_long_unknown", {"enrichment": {**CHAT, "input_too_long": "drop"}}, "enrichment.input_too_long", True),
    ("embeddings_neither", {"enrichment": {"mode": "embeddings"}}, "enrichment", False),
    (
        "embeddings_both",
        {"enrichment": {"mode": "embeddings", "fields": ["review"], "template": "{{ review }}"}},
        "enrichment",
        False,
    ),
    ("fields_as_text", {"enrichment": {"mode": "embeddings", "fields": "review"}}, "enrichment.fields", True),
    (
        "field_path_with_gap",
        {"enrichment": {"mode": "embeddings", "fields": ["review", "a..b"]}},
        "enrichment.fields[1]",
        False,
    ),
    (
        # The API refuses an input over 8,192 tokens: a higher limit would turn every long record into
        # an error row at run time.
        "embedding_input_over_the_models_limit",
        {"enrichment": {"mode": "embeddings", "fields": ["review"], "max_input_tokens": 10_000}},
        "enrichment.max_input_tokens",
        True,
    ),
    (
        "output_dimension_zero",
        {"enrichment": {"mode": "embeddings", "fields": ["review"], "output_dimension": 0}},
        "enrichment.output_dimension",
        True,
    ),
    (
        "override_without_name",
        {"enrichment": CHAT, "stream_overrides": [{"enrichment": {"mode": "none"}}]},
        "stream_overrides[0].stream_name",
        True,
    ),
    (
        "override_blank_name",
        {"enrichment": CHAT, "stream_overrides": [{"stream_name": " ", "enrichment": {"mode": "none"}}]},
        "stream_overrides[0].stream_name",
        False,
    ),
    (
        "override_twice",
        {
            "enrichment": CHAT,
            "stream_overrides": [
                {"stream_name": "a", "enrichment": {"mode": "none"}},
                {"stream_name": "a", "enrichment": {"mode": "none"}},
            ],
        },
        "stream_overrides[1].stream_name",
        False,
    ),
    (
        "override_bad_enrichment",
        {"enrichment": CHAT, "stream_overrides": [{"stream_name": "a", "enrichment": {"mode": "chat"}}]},
        "stream_overrides[0].enrichment.prompt_template",
        True,
    ),
    (
        "overrides_not_a_list",
        {"enrichment": CHAT, "stream_overrides": {"a": {"mode": "none"}}},
        "stream_overrides",
        True,
    ),
    ("output_missing", {"enrichment": CHAT, "output": None}, "output", True),
    ("output_type_missing", {"enrichment": CHAT, "output": {"path": "x.duckdb"}}, "output.type", True),
    ("output_path_missing", {"enrichment": CHAT, "output": {"type": "duckdb"}}, "output.path", True),
    ("output_path_blank", {"enrichment": CHAT, "output": {"type": "duckdb", "path": " "}}, "output.path", False),
    (
        "motherduck_without_token",
        {"enrichment": CHAT, "output": {"type": "duckdb", "path": "md:my_db"}},
        "output.motherduck_token",
        False,
    ),
    (
        "motherduck_token_in_path",
        {
            "enrichment": CHAT,
            "output": {"type": "duckdb", "path": "md:my_db?motherduck_token=abc", "motherduck_token": "t"},
        },
        "output.motherduck_token",
        False,
    ),
    (
        "storage_version_pattern",
        {"enrichment": CHAT, "output": {"type": "duckdb", "path": "x.duckdb", "storage_version": "1.0"}},
        "output.storage_version",
        True,
    ),
    ("postgres_host_missing", {"enrichment": CHAT, "output": {**POSTGRES, "host": None}}, "output.host", True),
    ("postgres_host_blank", {"enrichment": CHAT, "output": {**POSTGRES, "host": " "}}, "output.host", False),
    ("postgres_database_blank", {"enrichment": CHAT, "output": {**POSTGRES, "database": ""}}, "output.database", False),
    (
        "postgres_username_missing",
        {"enrichment": CHAT, "output": {**POSTGRES, "username": None}},
        "output.username",
        True,
    ),
    ("postgres_port_zero", {"enrichment": CHAT, "output": {**POSTGRES, "port": 0}}, "output.port", True),
    ("postgres_port_text", {"enrichment": CHAT, "output": {**POSTGRES, "port": "5432"}}, "output.port", True),
    (
        "postgres_password_number",
        {"enrichment": CHAT, "output": {**POSTGRES, "password": 1234}},
        "output.password",
        True,
    ),
    (
        "postgres_ssl_mode_unknown",
        {"enrichment": CHAT, "output": {**POSTGRES, "ssl_mode": "on"}},
        "output.ssl_mode",
        True,
    ),
    (
        "postgres_hnsw_text",
        {"enrichment": CHAT, "output": {**POSTGRES, "hnsw_index": "yes"}},
        "output.hnsw_index",
        True,
    ),
    ("on_error_unknown", {"enrichment": CHAT, "on_error": "ignore"}, "on_error", True),
    ("limits_not_an_object", {"enrichment": CHAT, "limits": "fast"}, "limits", True),
    (
        "concurrency_zero",
        {"enrichment": CHAT, "limits": {"max_concurrent_requests": 0}},
        "limits.max_concurrent_requests",
        True,
    ),
    ("retries_negative", {"enrichment": CHAT, "limits": {"max_retries": -1}}, "limits.max_retries", True),
    ("rate_zero", {"enrichment": CHAT, "limits": {"requests_per_second": 0}}, "limits.requests_per_second", True),
    ("cache_enabled_text", {"enrichment": CHAT, "cache": {"enabled": "yes"}}, "cache.enabled", True),
    ("delivery_unknown", {"enrichment": CHAT, "delivery": {"mode": "later"}}, "delivery.mode", True),
    (
        "requests_per_job_zero",
        {"enrichment": CHAT, "delivery": {"requests_per_job": 0}},
        "delivery.requests_per_job",
        True,
    ),
    # Whole numbers past 64 bits passed both and crashed `write` when the request was encoded.
    ("random_seed_past_64_bits", {"enrichment": {**CHAT, "random_seed": 2**70}}, "enrichment.random_seed", True),
    (
        "output_dimension_past_64_bits",
        {"enrichment": {"mode": "embeddings", "fields": ["review"], "output_dimension": 2**70}},
        "enrichment.output_dimension",
        True,
    ),
    (
        "output_dimension_beyond_models",
        {"enrichment": {"mode": "embeddings", "fields": ["review"], "output_dimension": 4096}},
        "enrichment.output_dimension",
        True,
    ),
    ("max_tokens_huge", {"enrichment": {**CHAT, "max_tokens": 10**12}}, "enrichment.max_tokens", True),
    # Sizes that overflowed to infinity when turned into bytes: a system error from both.
    (
        "max_response_mb_huge",
        {"enrichment": CHAT, "limits": {"max_response_mb": 1e308}},
        "limits.max_response_mb",
        True,
    ),
    ("max_buffer_mb_huge", {"enrichment": CHAT, "limits": {"max_buffer_mb": 1e308}}, "limits.max_buffer_mb", True),
    (
        "tokens_per_minute_tiny",
        {"enrichment": CHAT, "limits": {"tokens_per_minute": 1}},
        "limits.tokens_per_minute",
        True,
    ),
    (
        "tokens_per_minute_huge",
        {"enrichment": CHAT, "limits": {"tokens_per_minute": 2**70}},
        "limits.tokens_per_minute",
        True,
    ),
    (
        "auto_threshold_huge",
        {"enrichment": CHAT, "delivery": {"auto_threshold": 2**70}},
        "delivery.auto_threshold",
        True,
    ),
    ("retry_time_huge", {"enrichment": CHAT, "limits": {"max_retry_seconds": 1e308}}, "limits.max_retry_seconds", True),
    ("poll_max_huge", {"enrichment": CHAT, "delivery": {"poll_max_seconds": 1e308}}, "delivery.poll_max_seconds", True),
    # Values that can never work were reported as transient errors, which the platform retries forever.
    ("timeout_tiny", {"enrichment": CHAT, "limits": {"timeout_seconds": 1e-9}}, "limits.timeout_seconds", True),
    ("max_response_mb_tiny", {"enrichment": CHAT, "limits": {"max_response_mb": 1e-9}}, "limits.max_response_mb", True),
    ("max_buffer_mb_tiny", {"enrichment": CHAT, "limits": {"max_buffer_mb": 1e-9}}, "limits.max_buffer_mb", True),
    ("rate_tiny", {"enrichment": CHAT, "limits": {"requests_per_second": 1e-9}}, "limits.requests_per_second", True),
    ("base_url_empty", {"enrichment": CHAT, "base_url": ""}, "base_url", False),
    ("base_url_blank", {"enrichment": CHAT, "base_url": "  "}, "base_url", False),
    # A pattern's `$` matched before a trailing line break (Python's reading, not the form's).
    (
        "schema_name_trailing_newline",
        {"enrichment": {**CHAT, "response_format": {"type": "json_schema", "name": "abc\n", "schema": SCHEMA_TEXT}}},
        "enrichment.response_format.name",
        False,
    ),
    (
        "storage_version_trailing_newline",
        {"enrichment": CHAT, "output": {"type": "duckdb", "path": "x.duckdb", "storage_version": "v1.0.0\n"}},
        "output.storage_version",
        False,
    ),
    # DuckDB schemas a table cannot be created in passed `check` and failed `write` with a system error.
    *[
        (
            f"duckdb_schema_{name}",
            {"enrichment": CHAT, "output": {"type": "duckdb", "path": "x.duckdb", "schema": name}},
            "output.schema",
            False,
        )
        for name in ("information_schema", "pg_catalog", "temp", "system", "x")
    ],
    # A NUL byte ends a path for the operating system: a system error, or a file of another name.
    (
        "directory_with_nul",
        {"enrichment": CHAT, "output": {"type": "jsonl", "directory": "out\x00x"}},
        "output.directory",
        False,
    ),
    (
        "duckdb_path_with_nul",
        {"enrichment": CHAT, "output": {"type": "duckdb", "path": "a\x00.duckdb"}},
        "output.path",
        False,
    ),
    # Template constructs that compile but fail on every record.
    *[
        (
            f"prompt_{name}",
            {"enrichment": {"mode": "chat", "prompt_template": text}},
            "enrichment.prompt_template",
            False,
        )
        for name, text in (
            ("include", "{% include 'other.txt' %}"),
            ("import", "{% import 'x' as y %}{{ review }}"),
            ("from_import", "{% from 'x' import y %}{{ review }}"),
            ("extends", "{% extends 'base' %}"),
            ("unknown_test", "{% if review is nosuchtest %}{{ review }}{% endif %}"),
        )
    ],
    (
        "system_prompt_include",
        {"enrichment": {**CHAT, "system_prompt": "{% include 'x' %}"}},
        "enrichment.system_prompt",
        False,
    ),
    (
        "embedding_template_unknown_test",
        {"enrichment": {"mode": "embeddings", "template": "{% if review is nosuchtest %}x{% endif %}"}},
        "enrichment.template",
        False,
    ),
    (
        "parameter_name_empty",
        {"enrichment": CHAT, "key_placement": {"method": "query_parameter", "parameter_name": ""}},
        "key_placement.parameter_name",
        True,
    ),
]


@pytest.fixture
def base(tmp_path):
    return {
        "api_key": "sk-agree-0000",
        "base_url": "http://127.0.0.1:9",
        "output": {"type": "jsonl", "directory": str(tmp_path / "out")},
    }


def _config(base, changes):
    config = {**base, **changes}
    return {key: value for key, value in config.items() if value is not None}


def run_write(config) -> str | None:
    error = write_error(config)
    return error.message if error else None


@pytest.mark.parametrize("changes", [changes for _, changes in VALID], ids=[name for name, _ in VALID])
def test_check_and_write_accept_the_same_valid_configs(base, changes, tmp_path):
    config = _config(base, changes)
    assert run_check(config, tmp_path) is None
    assert run_write(config) is None


@pytest.mark.parametrize(
    "changes, field", [(changes, field) for _, changes, field, _ in INVALID], ids=[name for name, *_ in INVALID]
)
def test_check_and_write_refuse_with_the_same_message_naming_the_field(base, changes, field, tmp_path):
    config = _config(base, changes)
    checked, written = run_check(config, tmp_path), run_write(config)
    assert checked is not None and written is not None, (checked, written)
    assert checked == written, "check and write must say the same"
    assert f"`{field}`" in written, f"the message should name `{field}`: {written}"
    assert "is not valid under any of the given schemas" not in written and "{'" not in written, (
        f"no jsonschema dump of the config: {written}"
    )


def test_the_spec_accepts_every_config_check_and_write_accept(base):
    validator = jsonschema.Draft7Validator(DestinationMistral().spec(None).connectionSpecification)
    for name, changes in VALID:
        assert not list(validator.iter_errors(_config(base, changes))), name


@pytest.mark.parametrize(
    "changes",
    [changes for _, changes, _, by_spec in INVALID if by_spec],
    ids=[name for name, _, _, by_spec in INVALID if by_spec],
)
def test_what_the_spec_refuses_check_and_write_refuse(base, changes):
    validator = jsonschema.Draft7Validator(DestinationMistral().spec(None).connectionSpecification)
    assert list(validator.iter_errors(_config(base, changes))), "the table marks this config as one the spec refuses"
    assert run_write(_config(base, changes)) is not None


def test_a_null_field_means_its_default_for_both(base, tmp_path):
    config = _config(
        base,
        {
            "enrichment": {**CHAT, "temperature": None, "response_format": None},
            "limits": {"max_retries": None},
            "delivery": None,
        },
    )
    assert run_check(config, tmp_path) is None
    assert run_write(config) is None


def test_the_model_hint_of_check_is_reached_once_the_config_passes(base, tmp_path, monkeypatch):
    """The config error no longer hides what `check` says about the model."""

    async def unknown_model(settings):
        return "Model 'mistral-smal' is not offered by this account. Did you mean 'mistral-small-latest'?"

    monkeypatch.setattr(destination_module, "_check_api", unknown_model)
    config = _config(base, {"enrichment": {**CHAT, "response_format": {"type": "json_schema", "schema": SCHEMA_TEXT}}})
    assert "Did you mean" in run_check(config, tmp_path)


@pytest.mark.parametrize("name", ["reviews.jsonl", "ns/reviews.jsonl", "_mistral_cache.duckdb"])
def test_a_file_in_the_jsonl_directory_that_cannot_be_written_is_refused_by_both_naming_the_directory(
    base, tmp_path, name
):
    """`check` tries every file `write` would open there (a directory in its place cannot be opened,
    even by root), so that both refuse it alike, naming `output.directory`, not `output.path`."""
    (tmp_path / "out" / name).mkdir(parents=True)
    config = _config(base, {"enrichment": CHAT})
    checked, written = run_check(config, tmp_path), run_write(config)
    assert checked is not None and checked == written, (checked, written)
    assert "`output.directory`" in written and "`output.path`" not in written, written


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9", "https://unreachable.invalid"])
def test_check_does_not_require_the_api_when_nothing_is_enriched(base, tmp_path, monkeypatch, base_url):
    """`write` never contacts the API with mode none everywhere, so `check` does not either, and says so."""

    async def api_unreachable(settings):
        return "The Mistral API could not be reached."

    monkeypatch.setattr(destination_module, "_check_api", api_unreachable)
    config = _config(
        {**base, "base_url": base_url, "api_key": "sk-wrong-key-0000"},
        {"enrichment": {"mode": "none"}, "stream_overrides": [{"stream_name": "a", "enrichment": {"mode": "none"}}]},
    )
    messages = check_messages(config, tmp_path)
    status = next(m.connectionStatus for m in messages if m.connectionStatus)
    assert status.status.value == "SUCCEEDED" and "not contacted" in status.message, status
    assert run_write(config) is None
    enriched = _config(
        base, {"enrichment": {"mode": "none"}, "stream_overrides": [{"stream_name": "a", "enrichment": CHAT}]}
    )
    assert run_check(enriched, tmp_path) == "The Mistral API could not be reached."
