"""The rules the spec's JSON schema cannot state, checked once the config's fields have the spec's
shape (settings.validation): templates that compile, a response schema that is JSON and a valid
JSON schema, exactly one source of the text to embed, no blank names or paths, one override per
stream, an output that can be written (settings.outputs). Each broken rule is a config error
naming the field and the fix."""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

import jsonschema
import orjson
from jsonschema.exceptions import best_match

from destination_mistral.settings.outputs import check_output
from destination_mistral.settings.validation import kind_words, or_words
from mistral_connection.errors import config_error

_SCHEMA_EXAMPLE = '{"type": "object", "properties": {...}}'


def check_rules(config: Mapping[str, Any]) -> None:
    check_enrichment(config["enrichment"], "enrichment")
    seen: dict[str, int] = {}
    for index, item in enumerate(config.get("stream_overrides") or []):
        name = item["stream_name"]
        if not name.strip():
            raise config_error(f"`stream_overrides[{index}].stream_name` is empty: name the stream it applies to.")
        if name in seen:
            raise config_error(
                f"`stream_overrides[{index}].stream_name` names the same stream as `stream_overrides[{seen[name]}]`: "
                "keep one entry per stream."
            )
        seen[name] = index
        check_enrichment(item["enrichment"], f"stream_overrides[{index}].enrichment")
    check_output(config["output"])


def check_enrichment(raw: Mapping[str, Any], where: str) -> None:
    from destination_mistral.enrich.templates import compile_template  # late: Jinja is needed only here

    if raw["mode"] == "chat":
        if not raw["prompt_template"].strip():
            raise config_error(
                f'`{where}.prompt_template` is empty: write the prompt, e.g. "Summarise: {{{{ review }}}}".'
            )
        compile_template(raw["prompt_template"], f"{where}.prompt_template")
        if raw.get("system_prompt"):
            compile_template(raw["system_prompt"], f"{where}.system_prompt")
        response_format = raw.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            _check_response_schema(response_format["schema"], f"{where}.response_format.schema")
    elif raw["mode"] == "embeddings":
        fields, template = raw.get("fields") or [], raw.get("template")
        if bool(fields) == bool(template):
            raise config_error(
                f"`{where}`: give either `fields` (a list of field paths) or `template` (a Jinja template) "
                "for the text to embed, not " + ("both." if fields else "neither.")
            )
        _check_paths(fields, f"{where}.fields")
        if template:
            compile_template(template, f"{where}.template")
        if isinstance(raw.get("chunking"), Mapping):
            _check_chunking(raw, f"{where}.chunking")
    elif raw["mode"] in ("moderation", "classification"):
        _check_classifier(raw, where)
    elif raw["mode"] == "ocr":
        _check_ocr(raw, where)


def _check_chunking(raw: Mapping[str, Any], where: str) -> None:
    from destination_mistral.settings.spec_fields import defaults

    chunking = {**defaults("enrichment", "embeddings", "chunking"), **raw["chunking"]}
    size, overlap = chunking["max_tokens"], chunking["overlap_tokens"]
    if "overlap_tokens" in raw["chunking"] and overlap >= size:  # an overlap left out fits (default_overlap)
        raise config_error(
            f"`{where}.overlap_tokens` ({overlap}) must be less than `{where}.max_tokens` ({size}): lower the "
            "overlap, or raise the chunk size."
        )
    limit = raw.get("max_input_tokens") or defaults("enrichment", "embeddings")["max_input_tokens"]
    if size > limit:
        raise config_error(
            f"`{where}.max_tokens` ({size}) is over the model's input limit `max_input_tokens` ({limit}): a chunk "
            "that long would be cut. Choose a chunk size of at most the limit."
        )
    for name in chunking.get("metadata_fields") or ():
        if not isinstance(name, str) or not name.strip() or "." in name:
            raise config_error(
                f'`{where}.metadata_fields` holds {name!r}: name top-level fields of the record, e.g. "title".'
            )


def _check_classifier(raw: Mapping[str, Any], where: str) -> None:
    from destination_mistral.enrich.templates import compile_template

    fields, template = raw.get("fields") or [], raw.get("template")
    conversation = (raw.get("conversation_field") or "").strip()
    given = [
        name
        for name, value in (("fields", fields), ("template", template), ("conversation_field", conversation))
        if value
    ]
    if len(given) != 1:
        said = " and ".join(f"`{name}`" for name in given) if given else "none of them"
        raise config_error(
            f"`{where}`: give exactly one of `fields` (field paths whose text is sent), `template` (a Jinja "
            f"template that builds the text) or `conversation_field` (a field holding a list of messages); "
            f"the config gives {said}."
        )
    _check_paths(fields, f"{where}.fields")
    if conversation:
        _check_paths([conversation], f"{where}.conversation_field", listed=False)
    if template:
        compile_template(template, f"{where}.template")
    if raw["mode"] == "classification" and not raw["model"].strip():
        raise config_error(
            f"`{where}.model` is empty: give the id of your classifier model (GET /v1/models lists it with the "
            "classification capability, e.g. `ft:classifier:ministral-3b-latest:...`)."
        )
    seen: set[str] = set()
    for index, item in enumerate(raw.get("category_thresholds") or []):
        name = item["category"].strip()
        if not name or name in seen:
            problem = "is empty" if not name else "names a category an earlier entry already sets"
            raise config_error(
                f"`{where}.category_thresholds[{index}].category` {problem}: give each category once, by its name "
                "in the API's answer (e.g. `violence_and_threats`)."
            )
        seen.add(name)


def _check_ocr(raw: Mapping[str, Any], where: str) -> None:
    _check_paths([raw["document_field"]], f"{where}.document_field", listed=False)
    max_pages, per_request = raw.get("max_pages"), raw.get("pages_per_request")
    if max_pages and per_request and per_request > max_pages:
        raise config_error(
            f"`{where}.pages_per_request` ({per_request}) is more than `{where}.max_pages` ({max_pages}): lower it, "
            "or leave it empty to read the first max_pages pages in one request."
        )


def _check_paths(texts: list[str], where: str, listed: bool = True) -> None:
    for index, text in enumerate(texts):
        if not all(field_path(text)):
            at = f"{where}[{index}]" if listed else where
            raise config_error(f'`{at}` has an empty name in it: write a field path such as "review.text".')


def field_path(text: str) -> tuple[str, ...]:
    """`review.text` -> ("review", "text"): a dotted field path of the embeddings' `fields`."""
    return tuple(text.strip().split("."))


def next_key(keys: Container[str], path: tuple[str, ...]) -> tuple[str, int] | None:
    """The key a dotted `path` reads first at one level, and how many of its steps that key takes:
    the longest run of steps joined by dots that is a key there wins, so a top-level field named
    `a.b` is read by the path `a.b` whole, and otherwise the dot steps into `a`. The embeddings'
    text (enrich.templates.text_from_fields) and the check against the stream's schema
    (settings.stream_fields) read a path with this one rule."""
    for end in range(len(path), 0, -1):
        key = ".".join(path[:end])
        if key in keys:
            return key, end
    return None


def _check_response_schema(text: str, where: str) -> None:
    try:
        schema = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise config_error(f"`{where}` is not valid JSON ({error}): paste the schema as JSON text.") from None
    if not isinstance(schema, dict) or not schema:
        raise config_error(f"`{where}` must be a JSON schema object, e.g. {_SCHEMA_EXAMPLE}.")
    validator = jsonschema.validators.validator_for(schema)
    error = best_match(validator(validator.META_SCHEMA).iter_errors(schema))
    if error is not None:
        # jsonschema's own message quotes the user's schema; this names the place and the rule.
        at = "/".join(str(step) for step in error.absolute_path) or "top level"
        expected = _expected(error)
        rule = f"must be {expected}" if expected else f"breaks JSON Schema's `{error.validator}` rule"
        raise config_error(f"`{where}` is not a valid JSON schema: its `{at}` {rule}.")


def _expected(error: jsonschema.ValidationError) -> str | None:
    """What the meta-schema wanted where the user's schema broke it, in words, when it says."""
    if error.validator == "enum":
        return f"one of {or_words(error.validator_value)}"
    if error.validator == "type":
        return kind_words(error.validator_value)
    if error.validator in ("anyOf", "oneOf"):
        options = [_expected(option) for option in error.context if not option.relative_path]
        return "; or ".join(option for option in options if option) or None
    return None
