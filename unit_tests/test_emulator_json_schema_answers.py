"""Answers for `response_format: json_schema` must validate against the schema the client sent."""

import jsonschema
import pytest

from mistral_emulator.json_schema_answers import generate, generate_json_object, sentiment

SCHEMAS = {
    "flat": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "authors": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "authors"],
        "additionalProperties": False,
    },
    "bounded": {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "even": {"type": "integer", "multipleOf": 2, "minimum": 3},
            "code": {"type": "string", "minLength": 3, "maxLength": 5},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 4, "uniqueItems": True},
            "when": {"type": "string", "format": "date-time"},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        },
        "required": ["score", "stars", "even", "code", "tags", "when", "ratio"],
    },
    "nested_refs": {
        "type": "object",
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["city", "zip"],
                "additionalProperties": False,
            }
        },
        "properties": {
            "people": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "age": {"type": ["integer", "null"]},
                        "address": {"$ref": "#/$defs/Address"},
                    },
                    "required": ["name", "age", "address"],
                },
            },
            "kind": {"anyOf": [{"type": "null"}, {"enum": ["a", "b"]}]},
            "meta": {
                "allOf": [
                    {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]},
                    {"properties": {"y": {"const": 3}}, "required": ["y"]},
                ]
            },
        },
        "required": ["people", "kind", "meta"],
    },
    "pydantic_style": {
        "title": "Review",
        "type": "object",
        "properties": {
            "sentiment": {"title": "Sentiment", "enum": ["positive", "negative", "neutral"], "type": "string"},
            "summary": {"title": "Summary", "type": "string"},
            "confidence": {"type": "number"},
        },
        "required": ["sentiment", "summary", "confidence"],
    },
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_generated_values_validate_against_their_schema(name):
    schema = SCHEMAS[name]
    for seed in range(5):
        value = generate(schema, "Customer says the delivery was late and the box was broken", seed)
        jsonschema.validate(
            value,
            schema,
            cls=jsonschema.Draft202012Validator,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )


def test_sentiment_enum_follows_the_words_of_the_prompt():
    schema = SCHEMAS["pydantic_style"]
    assert generate(schema, "I love it, excellent and fast service")["sentiment"] == "positive"
    assert generate(schema, "terrible, broken and late, I want a refund")["sentiment"] == "negative"
    assert sentiment("the parcel arrived on tuesday") == "neutral"


def test_same_inputs_give_the_same_answer():
    schema = SCHEMAS["nested_refs"]
    assert generate(schema, "text", 3) == generate(schema, "text", 3), "answers must be deterministic"


def test_json_object_mode_answers_an_object():
    assert isinstance(generate_json_object("anything"), dict)
