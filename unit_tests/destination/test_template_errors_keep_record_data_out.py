"""A template error becomes a record's error row, a LOG line and, with `on_error: fail`, the sync's
TRACE: it may name what the template names, never what the record holds."""

import pytest

from destination_mistral.enrich.templates import RecordError, compile_template, render

SECRET = "ZQXJ private review text"


def _error(template: str, record: dict) -> str:
    with pytest.raises(RecordError) as raised:
        render(compile_template(template), record)
    return str(raised.value)


@pytest.mark.parametrize(
    "template, record",
    [
        ("Label: {{ {}[text] }}", {"text": SECRET}),
        ("{{ labels[category] }}", {"labels": {"food": "F"}, "category": SECRET}),
        ("{{ record[text] }}", {"text": SECRET}),
        ("{{ items|map(attribute=key)|join(',') }}", {"items": [{"a": 1}], "key": SECRET}),
        ("{% set k = text %}{{ record[k] }}", {"text": SECRET}),
    ],
)
def test_a_key_looked_up_by_a_record_value_is_not_named(template, record):
    message = _error(template, record)
    assert "ZQXJ" not in message
    assert "refers to a value the record does not have" in message


def test_an_index_taken_from_the_record_is_not_named():
    message = _error("{{ items[n] }}", {"items": ["a"], "n": 987654321})
    assert "987654321" not in message
    assert "refers to a value the record does not have" in message


@pytest.mark.parametrize(
    "template, record, named",
    [
        ("Summarise {{ title }}", {"body": SECRET}, "'title' is undefined"),
        ("{{ record.title }}", {"body": SECRET}, "has no attribute 'title'"),
        ("{{ labels['drinks'] }}", {"labels": {"food": SECRET}}, "has no attribute 'drinks'"),
        ("{{ items[3] }}", {"items": [SECRET]}, "has no element 3"),
        ("{{ items|map(attribute='score')|join }}", {"items": [{"a": SECRET}]}, "has no attribute 'score'"),
    ],
)
def test_a_missing_name_the_template_writes_is_still_named(template, record, named):
    message = _error(template, record)
    assert named in message
    assert "ZQXJ" not in message


@pytest.mark.parametrize(
    "template, record",
    [
        ("{{ {}[text] }}", {"text": "__class__"}),
        ("{{ text|attr(name) }}", {"text": "x", "name": "__class__"}),
    ],
)
def test_an_unsafe_attribute_chosen_by_a_record_value_is_refused_without_its_name(template, record):
    message = _error(template, record)
    assert "blocked by the sandbox" in message
    assert "__class__" not in message


def test_an_unsafe_attribute_the_template_writes_is_named():
    assert "'__class__'" in _error("{{ text.__class__ }}", {"text": SECRET})


@pytest.mark.parametrize(
    "template, record",
    [
        ("{{ ['a'].index(text) }}", {"text": SECRET}),  # ValueError: '<text>' is not in list
        ("{{ text.format() }}", {"text": "{" + SECRET + "}"}),  # KeyError: '<text>'
        ("{{ text|int + 'x' }}", {"text": "7"}),  # TypeError
    ],
)
def test_other_render_errors_say_only_their_kind(template, record):
    message = _error(template, record)
    assert "ZQXJ" not in message
    assert message.startswith("template: ") and len(message) < 80
