"""A template or field list that names a field its stream's schema does not declare is a config
error when `write` starts, naming the setting, the field and the stream, instead of a sync that
writes nothing but error rows and exits 0. A stream whose schema lists no properties or allows any
others, and a name the template guards, are not refused."""

from __future__ import annotations

import pytest

from destination_mistral.settings.stream_fields import template_fields
from tests.support.builders import REVIEW_SCHEMA, configured_stream, messages_with_states, review
from unit_tests.destination.config_commands import write_error

NESTED_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "review": {"type": "object", "properties": {"text": {"type": "string"}, "stars": {"type": "integer"}}},
    },
}


def _config(tmp_path, enrichment, **extra):
    return {
        "api_key": "sk-fields-0000",
        "base_url": "http://127.0.0.1:9",
        "enrichment": enrichment,
        "output": {"type": "jsonl", "directory": str(tmp_path / "out")},
        **extra,
    }


def _refusal(config, *streams) -> str:
    error = write_error(config, streams or [configured_stream()], messages_with_states([review(1)]))
    assert error is not None, "the sync must not start"
    return error.message


def _accepted(config, *streams) -> None:
    error = write_error(config, streams)
    assert error is None, error.message


@pytest.mark.parametrize(
    "enrichment, setting, field",
    [
        (
            {"mode": "chat", "prompt_template": "Summarise {{ title }}: {{ review }}"},
            "enrichment.prompt_template",
            "title",
        ),
        (
            {"mode": "chat", "prompt_template": "{{ review }}", "system_prompt": "About {{ product_name }}"},
            "enrichment.system_prompt",
            "product_name",
        ),
        ({"mode": "chat", "prompt_template": "{{ record.reviw }}"}, "enrichment.prompt_template", "reviw"),
        ({"mode": "chat", "prompt_template": "{{ record['headline'] }}"}, "enrichment.prompt_template", "headline"),
        ({"mode": "embeddings", "fields": ["review", "body"]}, "enrichment.fields", "body"),
        ({"mode": "embeddings", "template": "{{ product }} {{ summary }}"}, "enrichment.template", "summary"),
    ],
)
def test_a_field_the_stream_lacks_is_refused_before_the_first_record(tmp_path, enrichment, setting, field):
    message = _refusal(_config(tmp_path, enrichment), configured_stream())
    assert f"`{setting}`" in message and f"`{field}`" in message and "'reviews'" in message, message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.jsonl")), "nothing is written"


def test_the_message_suggests_the_nearest_field(tmp_path):
    message = _refusal(_config(tmp_path, {"mode": "chat", "prompt_template": "{{ reveiw }}"}), configured_stream())
    assert "Did you mean `review`?" in message, message


def test_a_nested_field_path_is_checked_where_the_schema_lists_the_nested_properties(tmp_path):
    message = _refusal(
        _config(tmp_path, {"mode": "embeddings", "fields": ["review.txt"]}), configured_stream(schema=NESTED_SCHEMA)
    )
    assert "`review.txt`" in message and "Did you mean `review.text`?" in message, message
    _accepted(
        _config(tmp_path, {"mode": "embeddings", "fields": ["review.text"]}), configured_stream(schema=NESTED_SCHEMA)
    )


def test_a_stream_override_is_named_by_its_own_place_in_the_config(tmp_path):
    config = _config(
        tmp_path,
        {"mode": "chat", "prompt_template": "{{ review }}"},
        stream_overrides=[
            {"stream_name": "other", "enrichment": {"mode": "none"}},
            {"stream_name": "notes", "enrichment": {"mode": "chat", "prompt_template": "{{ note }}"}},
        ],
    )
    message = _refusal(config, configured_stream(), configured_stream(name="notes"))
    assert "`stream_overrides[1].enrichment.prompt_template`" in message and "'notes'" in message, message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"type": "object", "properties": {}},
        {**REVIEW_SCHEMA, "additionalProperties": True},
        {**REVIEW_SCHEMA, "additionalProperties": {"type": "string"}},
        {**REVIEW_SCHEMA, "patternProperties": {"^x_": {}}},
    ],
    ids=["no_properties", "empty_properties", "additional_true", "additional_schema", "pattern_properties"],
)
def test_a_schema_that_allows_any_field_refuses_nothing(tmp_path, schema):
    config = _config(tmp_path, {"mode": "chat", "prompt_template": "{{ title }}"})
    _accepted(config, configured_stream(schema=schema, primary_key=None))


@pytest.mark.parametrize(
    "template",
    [
        "{{ title | default('') }} {{ review }}",
        "{{ title | d('none') }}",
        "{% if title is defined %}{{ title }}{% endif %}{{ review }}",
        "{{ record.title | default('') }}",
        "{% for tag in tags %}{{ tag.name }}{{ loop.index }}{% endfor %}{% set x = review %}{{ x }}",
        "{{ record | tojson }} {{ range(3) | list }}",
    ],
)
def test_guarded_names_template_locals_and_the_whole_record_are_accepted(tmp_path, template):
    _accepted(_config(tmp_path, {"mode": "chat", "prompt_template": template}))


def test_template_fields_lists_the_unguarded_record_fields_in_order():
    assert template_fields(
        "{{ b }} {{ record.a }} {{ b }} {{ c | default('') }} {% for x in d %}{{ x.y }}{% endfor %}"
    ) == [("b",), ("a",), ("d",)]


def test_reading_a_template_computes_nothing_it_holds():
    """Only the template's syntax is read: a constant expression is never computed outside the sandbox
    (where `'x' * 10**10` would take the machine's memory; this one is merely too long to print)."""
    assert template_fields("{{ 10 ** 5000 }}{{ review }}") == [("review",)]


def test_names_the_template_defines_are_not_record_fields():
    text = (
        "{% macro m(a) %}{{ a }}{{ caller() }}{% endmacro %}{% call m(1) %}{{ varargs }}{% endcall %}"
        "{% set s = 1 %}{% for k, v in pairs %}{{ k }}{{ v }}{{ loop.index }}{% endfor %}{{ s }}{{ namespace() }}"
    )
    assert template_fields(text) == [("pairs",)]
