"""A config checked against the spec fields with jsonschema, each refusal told in one sentence that
names the field and the fix.

jsonschema's own messages quote the value refused, and for a `oneOf` the whole object (a template,
a pasted schema, anything the user typed), and do not say which field it is. So they are never
shown: the words come from the failed keyword and the field's own schema (its title, description,
example, bounds and default), and a value of the config is quoted only when it is a number. A
`oneOf` is read as the form reads it: the option chosen by its `mode` or `type`, whose fields are
then checked one by one."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft7Validator, ValidationError
from jsonschema.validators import extend

from destination_mistral.settings.spec_fields import option_values, own_schema
from mistral_connection.field_words import FieldPath, discriminator, dotted, or_words

_KINDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "empty",
}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_LONGEST_EXAMPLE = 80


def _whole_pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Any:
    """`pattern` as the platform's (ECMA-262) validators read it: a final `$` is the end of the text.
    Python's `$` also matches before a trailing line break, so "abc\\n" would pass `^[a-z]+$`."""
    if not isinstance(instance, str):
        return
    anchored = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    if not re.search(anchored, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# The spec's patterns are written for the form (ECMA-262); this validator reads them the same way.
_Validator = extend(Draft7Validator, {"pattern": _whole_pattern})


def schema_problem(config: Mapping[str, Any]) -> str | None:
    """The first of the config's own fields that the spec refuses, in the form's order, told in
    words; None when the spec accepts them all."""
    return _first_problem(config, own_schema(), ())


def _first_problem(instance: Any, schema: Mapping[str, Any], path: FieldPath) -> str | None:
    for error in _Validator(schema).iter_errors(instance):
        where = path + tuple(error.absolute_path)
        if error.validator == "oneOf":
            return _option_problem(error.instance, error.validator_value, where)
        return _describe(error, where)
    return None


def _option_problem(instance: Any, options: Sequence[Mapping[str, Any]], where: FieldPath) -> str:
    key = discriminator(options)
    if key is None:  # every oneOf of the spec has one; a future one without says what the form says
        return f"`{dotted(where)}` is not valid: choose one of the options the form offers."
    values = option_values(options, key)
    if not isinstance(instance, Mapping):
        return f"`{dotted(where)}` must be an object with `{key}` set to {or_words(values)}, not {_kind_of(instance)}."
    if key not in instance:
        return f"`{dotted(where + (key,))}` is missing: set it to {or_words(values)}."
    chosen = next((option for option, value in zip(options, values, strict=False) if value == instance[key]), None)
    if chosen is None:
        return f"`{dotted(where + (key,))}` must be {or_words(values)}."
    return (
        _first_problem(instance, chosen, where)
        or f"`{dotted(where)}` is not valid: see the form's {instance[key]} option."
    )


def _describe(error: Any, where: FieldPath) -> str:
    keyword, schema = error.validator, error.schema
    if keyword == "required":
        missing = next(name for name in error.validator_value if name not in error.instance)
        return _missing(where + (missing,), schema.get("properties", {}).get(missing, {}))
    name = f"`{dotted(where)}`" if where else "The config"
    if keyword == "type":
        if schema.get("oneOf") and discriminator(schema["oneOf"]):
            return _option_problem(error.instance, schema["oneOf"], where)
        if _is_number(error.instance) and error.validator_value == "integer":
            return f"{name} must be a whole number, got {error.instance}.{_default_hint(schema)}"
        return f"{name} must be {kind_words(error.validator_value)}, not {_kind_of(error.instance)}{_fix(schema)}."
    if keyword in ("enum", "const"):
        values = error.validator_value if keyword == "enum" else [error.validator_value]
        return f"{name} must be {or_words(values)}."
    if keyword in _BOUNDS:
        return f"{name} must be {_range(schema)}, got {_number(error.instance)}.{_default_hint(schema)}"
    if keyword == "pattern":
        return f"{name} must be {_pattern_words(error.validator_value)}{_fix(schema)}."
    return f"{name} is not valid{_fix(schema)}."


def _missing(path: FieldPath, schema: Mapping[str, Any]) -> str:
    name = f"`{dotted(path)}` is missing"
    options = schema.get("oneOf")
    key = discriminator(options) if options else None
    if key:
        return f"{name}: add it, with `{key}` set to {or_words(option_values(options, key))}."
    if "enum" in schema:
        return f"{name}: set it to {or_words(schema['enum'])}."
    title = schema.get("title")
    what = (
        f"give the {title[0].lower() + title[1:] if not title[:2].isupper() else title}" if title else "give it a value"
    )
    return f"{name}: {what}{_fix(schema)}."


def _fix(schema: Mapping[str, Any]) -> str:
    """What the field holds, from the form: an example, else its description's first sentence."""
    example = _example(schema)
    if example:
        return f", e.g. {example}"
    description = schema.get("description")
    return f" ({_first_sentence(description)})" if description else ""


def _example(schema: Mapping[str, Any]) -> str | None:
    for value in [*schema.get("examples", []), *([schema["default"]] if "default" in schema else [])]:
        shown = json.dumps(value, ensure_ascii=False)
        if len(shown) <= _LONGEST_EXAMPLE and not isinstance(value, bool):
            return shown
    return None


# A sentence ends at a full stop followed by a space, but not at "e.g." or "i.e.".
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.(\s|$)")


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    end = _SENTENCE_END.search(text)
    sentence = text[: end.start()] if end else text
    return sentence[0].lower() + sentence[1:] if sentence[:2].istitle() else sentence


def _default_hint(schema: Mapping[str, Any]) -> str:
    return f" Leave it empty for the default ({_number(schema['default'])})." if "default" in schema else ""


def _range(schema: Mapping[str, Any]) -> str:
    kind = "a whole number" if schema.get("type") == "integer" else "a number"
    low = (
        f"at least {_number(schema['minimum'])}"
        if "minimum" in schema
        else f"above {_number(schema['exclusiveMinimum'])}"
        if "exclusiveMinimum" in schema
        else ""
    )
    high = (
        f"at most {_number(schema['maximum'])}"
        if "maximum" in schema
        else f"below {_number(schema['exclusiveMaximum'])}"
        if "exclusiveMaximum" in schema
        else ""
    )
    if "minimum" in schema and "maximum" in schema:
        return f"{kind} from {_number(schema['minimum'])} to {_number(schema['maximum'])}"
    return f"{kind} " + " and ".join(part for part in (low, high) if part)


def _number(value: Any) -> str:
    # A whole number past 2^53 reads back from a JSON file as a float (orjson): both are told alike.
    if isinstance(value, int) and abs(value) > 2**53:
        value = float(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


# Patterns of the form ^[class]+$ or ^[class]{m,n}$, the only ones the spec uses.
_CHARACTER_CLASS = re.compile(r"^\^\[(?P<chars>[^\]]+)\](?:(?P<plus>\+)|\{(?P<low>\d+),(?P<high>\d+)\})\$$")
_RANGES = {"A-Z": "capital letters", "a-z": "lower-case letters", "0-9": "digits"}


def _pattern_words(pattern: str) -> str:
    match = _CHARACTER_CLASS.match(pattern)
    if not match:
        return "written in the form's format"
    chars = match["chars"]
    kinds = []
    if "A-Z" in chars and "a-z" in chars:
        kinds.append("letters")
        chars = chars.replace("A-Z", "").replace("a-z", "")
    for span, words in _RANGES.items():
        if span in chars:
            kinds.append(words)
            chars = chars.replace(span, "")
    kinds += list(dict.fromkeys(chars.replace("\\", "")))
    count = "one or more" if match["plus"] else f"{match['low']} to {match['high']}"
    return f"{count} characters, each one of: {or_words(kinds)}"


def kind_words(expected: Any) -> str:
    kinds = expected if isinstance(expected, list) else [expected]
    return or_words([_KINDS.get(kind, kind) for kind in kinds])


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if _is_number(value):
        return "a number"
    return {str: "text", dict: "an object", list: "a list", type(None): "empty"}.get(type(value), "another type")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
