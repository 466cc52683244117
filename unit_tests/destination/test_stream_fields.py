"""The fields the settings name, checked at the start of `write` against each stream's schema: a
dotted path resolves as the text to embed is read, methods of the record are not fields, and nested
fields are refused where the schema closes them, always as a config error naming field and stream."""

from __future__ import annotations

import pytest

from destination_mistral.enrich.templates import text_from_fields, value_at
from destination_mistral.settings.rules import field_path
from destination_mistral.settings.stream_fields import template_fields
from tests.support.builders import configured_stream, messages_with_states
from unit_tests.destination.config_commands import write_error

REVIEWS = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "review": {"type": "string"}, "product": {"type": "string"}},
}
DOTTED = {"type": "object", "properties": {"id": {"type": "integer"}, "a.b": {"type": "string"}}}
CLOSED_REVIEW = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "review": {"type": "object", "properties": {"text": {"type": "string"}}, "additionalProperties": False},
    },
}


def _config(tmp_path, enrichment):
    return {
        "api_key": "sk-TESTKEY-abc123",
        "base_url": "http://127.0.0.1:9",
        "enrichment": enrichment,
        "output": {"type": "jsonl", "directory": str(tmp_path / "out")},
    }


def _refusal(tmp_path, enrichment, schema) -> str:
    records = [{"id": 1, "review": "good"}, {"id": 2, "review": "bad"}]
    error = write_error(
        _config(tmp_path, enrichment), [configured_stream(schema=schema)], messages_with_states(records)
    )
    assert error is not None, "write must refuse before the first record"
    return error.message


def _accepted(tmp_path, enrichment, schema) -> None:
    error = write_error(_config(tmp_path, enrichment), [configured_stream(schema=schema)])
    assert error is None, error.message


def test_a_missing_dotted_field_is_a_config_error_naming_the_path_and_the_stream(tmp_path):
    message = _refusal(tmp_path, {"mode": "embeddings", "fields": ["nope.text"]}, REVIEWS)
    assert "`enrichment.fields`" in message and "`nope.text`" in message and "'reviews'" in message, message


def test_a_top_level_field_whose_name_holds_a_dot_is_read_whole(tmp_path):
    _accepted(tmp_path, {"mode": "embeddings", "fields": ["a.b"]}, DOTTED)
    assert text_from_fields({"a.b": "x"}, (field_path("a.b"),)) == "x"


def test_a_dotted_path_prefers_the_key_holding_the_whole_name_and_otherwise_steps_in():
    assert value_at({"a.b": "whole", "a": {"b": "nested"}}, ("a", "b")) == "whole"
    assert value_at({"a": {"b": "nested"}}, ("a", "b")) == "nested"
    assert value_at({"a": {"b.c": "deep"}}, ("a", "b", "c")) == "deep"
    assert value_at({"a": "text"}, ("a", "b")) is None


@pytest.mark.parametrize(
    "template",
    [
        "{{ record.get('review') }}",
        "{% for k, v in record.items() %}{{k}}={{v}} {% endfor %}",
        "{{ record.keys() | list }}",
        "{{ record.values() | list }} {{ review.upper() }}",
    ],
)
def test_methods_of_the_record_are_not_fields(tmp_path, template):
    assert template_fields(template) in ([], [("review",)])
    _accepted(tmp_path, {"mode": "chat", "prompt_template": template}, REVIEWS)


def test_an_undeclared_nested_field_of_a_closed_object_is_refused(tmp_path):
    message = _refusal(tmp_path, {"mode": "chat", "prompt_template": "{{ review.nope }}"}, CLOSED_REVIEW)
    assert "`enrichment.prompt_template`" in message and "`review.nope`" in message and "'reviews'" in message
    message = _refusal(tmp_path, {"mode": "chat", "prompt_template": "{{ record['review']['nope'] }}"}, CLOSED_REVIEW)
    assert "`review.nope`" in message, message
    _accepted(tmp_path, {"mode": "chat", "prompt_template": "{{ review.text }}"}, CLOSED_REVIEW)
    _accepted(tmp_path, {"mode": "chat", "prompt_template": "{{ review.nope | default('') }}"}, CLOSED_REVIEW)


def test_a_field_inside_a_string_is_refused(tmp_path):
    message = _refusal(tmp_path, {"mode": "embeddings", "fields": ["review.text"]}, REVIEWS)
    assert "`enrichment.fields`" in message and "`review.text`" in message and "'reviews'" in message, message
    assert "string" in message, message


@pytest.mark.parametrize(
    "review_schema",
    [
        {"type": "object"},
        {"type": "object", "properties": {"text": {"type": "string"}}, "additionalProperties": True},
        {},
    ],
    ids=["no_properties", "additional_true", "untyped"],
)
def test_nested_fields_stay_allowed_where_the_schema_does_not_close_them(tmp_path, review_schema):
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "review": review_schema}}
    _accepted(tmp_path, {"mode": "chat", "prompt_template": "{{ review.nope }}"}, schema)
    _accepted(tmp_path, {"mode": "embeddings", "fields": ["review.nope"]}, schema)
