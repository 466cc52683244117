"""Templates run sandboxed; a missing field is an error for that record only."""

import pytest

from destination_mistral.enrich.templates import RecordError, compile_template, render, text_from_fields


def test_missing_field_is_a_record_error_naming_the_field():
    with pytest.raises(RecordError, match="title"):
        render(compile_template("Summarise {{ title }}"), {"body": "x"})


def test_default_filter_guards_a_missing_field():
    assert render(compile_template("{{ title | default('none') }}"), {}) == "none"


def test_sandbox_blocks_python_internals():
    template = compile_template("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(RecordError, match="template"):
        render(template, {})


def test_record_variable_and_nested_access():
    assert (
        render(compile_template("{{ record.user.name }} / {{ user.name }}"), {"user": {"name": "Ada"}}) == "Ada / Ada"
    )


def test_embedding_text_holds_values_only_not_field_names():
    text = text_from_fields(
        {"title": "Phone", "body": {"text": "Great battery"}, "n": 3}, (("title",), ("body", "text"), ("n",))
    )
    assert text == "Phone\nGreat battery\n3"
    assert "title" not in text and "body" not in text, "field names must not be embedded"


def test_embedding_text_skips_missing_and_fails_when_nothing_is_left():
    assert text_from_fields({"a": None, "b": "x"}, (("a",), ("b",), ("c",))) == "x"
    with pytest.raises(RecordError):
        text_from_fields({"a": None}, (("a",), ("b",)))
