"""Settings parsing: every mistake is a config error that names the field."""

import json

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.destination import DestinationMistral
from destination_mistral.settings import ChatSettings, EmbeddingSettings, parse_config

BASE = {
    "api_key": "secret-key-123",
    "base_url": "http://127.0.0.1:8089",
    "output": {"type": "duckdb", "path": "/tmp/x.duckdb"},
}


def config_error_of(config) -> str:
    with pytest.raises(AirbyteTracedException) as caught:
        parse_config(config)
    assert caught.value.failure_type == FailureType.config_error, "user mistakes must be config errors"
    return caught.value.message


def test_spec_has_credential_block_and_own_fields():
    spec = DestinationMistral().spec(None).connectionSpecification
    props = spec["properties"]
    for field in (
        "api_key",
        "model",
        "base_url",
        "key_placement",
        "enrichment",
        "stream_overrides",
        "output",
        "on_error",
        "limits",
        "cache",
    ):
        assert field in props, f"spec lacks {field}"
    assert props["api_key"]["airbyte_secret"] is True
    modes = [o["properties"]["mode"]["const"] for o in props["enrichment"]["oneOf"]]
    assert modes == ["chat", "embeddings", "moderation", "classification", "ocr", "none"]
    assert props["stream_overrides"]["items"]["properties"]["enrichment"]["oneOf"] == props["enrichment"]["oneOf"], (
        "per-stream overrides must offer exactly the same enrichment form"
    )


def test_chat_defaults_to_credential_model_and_parses_json_schema():
    schema = {"type": "object", "properties": {"sentiment": {"type": "string"}}}
    settings = parse_config(
        {
            **BASE,
            "model": "mistral-large-latest",
            "enrichment": {
                "mode": "chat",
                "prompt_template": "Hi {{ name }}",
                "temperature": 0,
                "response_format": {"type": "json_schema", "schema": json.dumps(schema)},
            },
        }
    )
    assert isinstance(settings.enrichment, ChatSettings)
    assert settings.enrichment.model == "mistral-large-latest"
    assert settings.enrichment.response_format.schema == schema
    assert settings.enrichment.response_format.request_body()["json_schema"]["schema"] == schema


def test_embeddings_default_model_is_mistral_embed():
    settings = parse_config({**BASE, "enrichment": {"mode": "embeddings", "fields": ["title", "body.text"]}})
    assert isinstance(settings.enrichment, EmbeddingSettings)
    assert settings.enrichment.model == "mistral-embed"
    assert settings.enrichment.fields == (("title",), ("body", "text"))


@pytest.mark.parametrize(
    "enrichment, field",
    [
        ({"mode": "chat"}, "enrichment.prompt_template"),
        ({"mode": "chat", "prompt_template": "{{ unclosed"}, "enrichment.prompt_template"),
        ({"mode": "chat", "prompt_template": "x", "temperature": 3}, "enrichment.temperature"),
        (
            {"mode": "chat", "prompt_template": "x", "response_format": {"type": "json_schema", "schema": "{not json"}},
            "enrichment.response_format.schema",
        ),
        (
            {
                "mode": "chat",
                "prompt_template": "x",
                "response_format": {"type": "json_schema", "schema": '{"type": 5}'},
            },
            "enrichment.response_format.schema",
        ),
        ({"mode": "embeddings"}, "enrichment"),
        ({"mode": "embeddings", "fields": ["a"], "template": "{{ a }}"}, "enrichment"),
        ({"mode": "rerank"}, "enrichment.mode"),
    ],
)
def test_config_errors_name_the_field(enrichment, field):
    message = config_error_of({**BASE, "enrichment": enrichment})
    assert f"`{field}" in message, f"the message should name {field}: {message}"


def test_output_and_limits_errors_name_the_field():
    assert "`output.path`" in config_error_of(
        {**BASE, "enrichment": {"mode": "none"}, "output": {"type": "duckdb", "path": ""}}
    )
    assert "`limits.max_concurrent_requests`" in config_error_of(
        {**BASE, "enrichment": {"mode": "none"}, "limits": {"max_concurrent_requests": 0}}
    )
    assert "`stream_overrides[1].stream_name`" in config_error_of(
        {
            **BASE,
            "enrichment": {"mode": "none"},
            "stream_overrides": [
                {"stream_name": "a", "enrichment": {"mode": "none"}},
                {"stream_name": "a", "enrichment": {"mode": "none"}},
            ],
        }
    )


def test_an_in_memory_duckdb_or_a_reserved_postgres_schema_is_refused_naming_the_field():
    memory = config_error_of({**BASE, "enrichment": {"mode": "none"}, "output": {"type": "duckdb", "path": ":memory:"}})
    assert "`output.path`" in memory and "nothing would be stored" in memory
    postgres = {"type": "postgres", "host": "h", "database": "d", "username": "u", "password": "p", "schema": "pg_x"}
    reserved = config_error_of({**BASE, "enrichment": {"mode": "none"}, "output": postgres})
    assert "`output.schema`" in reserved and "pg_" in reserved


@pytest.mark.parametrize(
    ("config", "field", "fix"),
    [
        (
            {"enrichment": {"mode": "chat", "prompt_template": "{{ a }}", "chunking": {"max_tokens": 64}}},
            "`enrichment.chunking`",
            "set `enrichment.mode` to embeddings",
        ),
        (
            {"enrichment": {"mode": "embeddings", "fields": ["a"], "chunking": {"max_token": 64}}},
            "`enrichment.chunking.max_token`",
            "Did you mean `max_tokens`?",
        ),
        (
            {"enrichment": {"mode": "none"}, "limits": {"tokens_per_minut": 5000}},
            "`limits.tokens_per_minut`",
            "Did you mean `tokens_per_minute`?",
        ),
        (
            {
                "enrichment": {"mode": "none"},
                "stream_overrides": [
                    {"stream_name": "a", "enrichment": {"mode": "chat", "prompt_template": "x", "feilds": ["x"]}}
                ],
            },
            "`stream_overrides[0].enrichment.feilds`",
            "Did you mean `fields`, of the embeddings",
        ),
        # A misspelt required field is named as typed, not reported as the missing one.
        (
            {"enrichment": {"mode": "none"}, "output": {"type": "duckdb", "pth": "out.duckdb"}},
            "`output.pth`",
            "Did you mean `path`?",
        ),
    ],
)
def test_a_field_the_form_does_not_have_is_refused_not_ignored(config, field, fix):
    """A field of another mode or a misspelt one would otherwise be silently without effect."""
    message = config_error_of({**BASE, **config})
    assert field in message and fix in message, message


def test_top_level_fields_of_the_shared_credential_block_are_left_alone():
    """One config file may serve the source too: its own top-level fields are not the destination's."""
    parse_config({**BASE, "enrichment": {"mode": "none"}, "start_date": "2024-01-01T00:00:00Z"})


def test_stream_override_replaces_enrichment_for_that_stream_only():
    settings = parse_config(
        {
            **BASE,
            "enrichment": {"mode": "chat", "prompt_template": "x"},
            "stream_overrides": [{"stream_name": "docs", "enrichment": {"mode": "embeddings", "fields": ["body"]}}],
        }
    )
    assert settings.enrichment_for("docs").mode == "embeddings"
    assert settings.enrichment_for("other").mode == "chat"


def test_spec_offers_duckdb_jsonl_and_postgres_outputs_with_secrets_marked():
    props = DestinationMistral().spec(None).connectionSpecification["properties"]
    options = {o["properties"]["type"]["const"]: o for o in props["output"]["oneOf"]}
    assert list(options) == ["duckdb", "jsonl", "postgres"]
    assert options["postgres"]["properties"]["password"]["airbyte_secret"] is True
    assert options["duckdb"]["properties"]["motherduck_token"]["airbyte_secret"] is True
    assert set(options["postgres"]["required"]) == {"type", "host", "database", "username"}
    assert options["duckdb"]["properties"]["storage_version"]["default"] == "v1.0.0"


def test_postgres_settings_take_the_spec_defaults_and_never_show_the_password():
    output = {"type": "postgres", "host": " db.example.com ", "database": "d", "username": "u", "password": "pw-1"}
    settings = parse_config({**BASE, "enrichment": {"mode": "none"}, "output": output}).output
    postgres = settings.postgres
    assert (postgres.host, postgres.port, postgres.ssl_mode, postgres.hnsw_index) == (
        "db.example.com",
        5432,
        "require",
        False,
    )
    assert settings.schema == "public" and settings.path is None
    assert "pw-1" not in repr(settings) and "pw-1" not in settings.location
    assert settings.secrets == ["pw-1"]


@pytest.fixture
def local_root(tmp_path, monkeypatch):
    root = tmp_path / "local"
    root.mkdir()
    monkeypatch.setenv("DESTINATION_MISTRAL_LOCAL_ROOT", str(root))
    return root


def output_of(output):
    return parse_config({**BASE, "enrichment": {"mode": "none"}, "output": output}).output


def test_in_the_container_a_relative_path_is_under_local(local_root):
    assert output_of({"type": "duckdb", "path": "sub/out.duckdb"}).path == local_root / "sub" / "out.duckdb"
    assert output_of({"type": "jsonl", "directory": str(local_root / "j")}).path == local_root / "j"


@pytest.mark.parametrize(
    "path", ["/tmp/x.duckdb", "../x.duckdb", "link/x.duckdb"], ids=["absolute", "dotdot", "symlink"]
)
def test_in_the_container_a_path_leaving_local_is_refused(local_root, tmp_path, path):
    (local_root / "link").symlink_to(tmp_path)
    message = config_error_of({**BASE, "enrichment": {"mode": "none"}, "output": {"type": "duckdb", "path": path}})
    assert "`output.path`" in message and str(local_root) in message and "/tmp/airbyte_local" in message, message


def test_outside_the_container_paths_are_used_as_given(monkeypatch):
    monkeypatch.delenv("DESTINATION_MISTRAL_LOCAL_ROOT", raising=False)
    assert str(output_of({"type": "duckdb", "path": "/tmp/x.duckdb"}).path) == "/tmp/x.duckdb"


def test_a_secret_quoted_by_an_output_error_is_masked(local_root):
    token = "md-token-quoted-998877"
    output = {"type": "duckdb", "path": f"/elsewhere/{token}.duckdb", "motherduck_token": token}
    message = config_error_of({**BASE, "enrichment": {"mode": "none"}, "output": output})
    assert "`output.path`" in message and token not in message, message


def test_a_motherduck_path_keeps_its_name_and_token():
    settings = output_of({"type": "duckdb", "path": "md:analytics", "motherduck_token": "tok-1"})
    assert settings.is_motherduck and str(settings.path) == "md:analytics" and settings.motherduck_token == "tok-1"
    assert "tok-1" not in repr(settings)
