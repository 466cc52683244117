"""The API key never appears in a config error of `check` or `write`, even when it was pasted into
another field by mistake: a template (whose syntax error Jinja describes), a response schema (whose
fault jsonschema describes), a stream name, a field a template names."""

from __future__ import annotations

import json

import pytest

from unit_tests.destination.config_commands import check_messages, offline_api, write_error  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("offline_api")

# Underscores rather than hyphens, so that it can also be a Jinja name in a template.
KEY = "sk_LEAK_7f3a9c2e5d1b"
CHAT = {"mode": "chat", "prompt_template": "{{ review }}"}

CONFIGS = {
    "template_syntax": {"enrichment": {"mode": "chat", "prompt_template": "{{ review " + KEY}},
    "template_tag": {"enrichment": {"mode": "chat", "prompt_template": "{% " + KEY + " %}"}},
    "system_prompt_syntax": {"enrichment": {**CHAT, "system_prompt": "{{ " + KEY + " }"}},
    "schema_type": {
        "enrichment": {**CHAT, "response_format": {"type": "json_schema", "schema": json.dumps({"type": KEY})}}
    },
    "schema_not_json": {"enrichment": {**CHAT, "response_format": {"type": "json_schema", "schema": "{" + KEY}}},
    "schema_name": {
        "enrichment": {
            **CHAT,
            "response_format": {"type": "json_schema", "name": KEY + "!", "schema": '{"type": "object"}'},
        }
    },
    "mode": {"enrichment": {"mode": KEY}},
    "on_error": {"enrichment": CHAT, "on_error": KEY},
    "output_type": {"enrichment": CHAT, "output": {"type": KEY}},
    "number_field": {"enrichment": {**CHAT, "temperature": KEY}},
    "override_twice": {
        "enrichment": CHAT,
        "stream_overrides": [
            {"stream_name": KEY, "enrichment": {"mode": "none"}},
            {"stream_name": KEY, "enrichment": {"mode": "none"}},
        ],
    },
    "motherduck": {"enrichment": CHAT, "output": {"type": "duckdb", "path": "md:" + KEY}},
    "template_field": {"enrichment": {"mode": "chat", "prompt_template": "{{ " + KEY + " }}"}},
    "embedding_field": {"enrichment": {"mode": "embeddings", "fields": [KEY]}},
}


def _config(tmp_path, changes):
    return {
        "api_key": KEY,
        "base_url": "http://127.0.0.1:9",
        "output": {"type": "jsonl", "directory": str(tmp_path / "out")},
        **changes,
    }


@pytest.mark.parametrize("changes", list(CONFIGS.values()), ids=list(CONFIGS))
def test_write_refuses_without_the_key_in_any_text(tmp_path, changes):
    error = write_error(_config(tmp_path, changes))
    assert error is not None
    for text in (error.message, error.internal_message or "", str(error), repr(error.args)):
        assert KEY not in text, f"the key leaked: {text}"
    assert "`" in error.message, f"the message names a field: {error.message}"


@pytest.mark.parametrize(
    "changes",
    [c for name, c in CONFIGS.items() if not name.endswith("_field")],
    ids=[name for name in CONFIGS if not name.endswith("_field")],
)
def test_check_fails_without_the_key_in_any_message(tmp_path, changes):
    messages = check_messages(_config(tmp_path, changes), tmp_path)
    assert "FAILED" in repr(messages), messages
    assert KEY not in repr(messages), f"the key leaked: {messages}"


def test_every_secret_field_of_the_spec_is_registered_for_masking_with_its_encoded_forms():
    """write and load mask what config_secrets returns on every line they print: the output's
    password and MotherDuck token as well as the key, whichever output option holds them."""
    from destination_mistral.settings.key_masking import config_secrets

    postgres = {
        "api_key": "key-0123456789",
        "output": {"type": "postgres", "host": "db", "database": "d", "username": "u", "password": "pa ss/wörd+1"},
    }
    motherduck = {"api_key": "key-0123456789", "output": {"type": "duckdb", "path": "md:x", "motherduck_token": "tok"}}
    found = config_secrets(postgres)
    assert {"key-0123456789", "pa ss/wörd+1", "pa+ss%2Fw%C3%B6rd%2B1"} <= set(found)
    assert "tok" in config_secrets(motherduck)
    assert config_secrets({"output": {"type": "jsonl", "directory": "/tmp/x"}}) == []
    assert config_secrets("not a mapping") == []
