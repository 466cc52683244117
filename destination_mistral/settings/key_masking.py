"""The API key (and the output's password or token) kept out of config errors. The messages are
built from field paths and the spec, but a few quote what the user wrote (Jinja's account of a
template's syntax error, jsonschema's of a broken response schema, a field a template names), and a
key pasted into a template or a field by mistake must not reach the logs through them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from destination_mistral.settings.spec_fields import own_schema
from mistral_connection import secret_forms

MASK = "****"
# A shorter key cannot be told apart from ordinary words in a message; masking it would garble the
# message without protecting anything.
SHORTEST_MASKED = 8


@contextmanager
def key_kept_out(key: str, *secrets: str) -> Iterator[None]:
    """Any error raised inside leaves with every form of `key` and of the other `secrets` (the
    output's password or token) in its messages masked."""
    try:
        yield
    except Exception as error:
        mask_error(error, key, *secrets)
        raise


def mask_error(error: Exception, *secrets: str) -> None:
    """Masks every form of each secret in the error's messages, in place."""
    forms = [form for secret in secrets for form in secret_forms(secret) if len(form) >= SHORTEST_MASKED]
    forms.sort(key=len, reverse=True)  # a longer form first, not half masked by a shorter one
    for attribute in ("message", "internal_message"):
        text = getattr(error, attribute, None)
        if isinstance(text, str):
            setattr(error, attribute, _masked(text, forms))
    error.args = tuple(_masked(arg, forms) if isinstance(arg, str) else arg for arg in error.args)


def _masked(text: str, forms: list[str]) -> str:
    for form in forms:
        text = text.replace(form, MASK)
    return text


def config_secrets(config: Any) -> list[str]:
    """Every form of each secret value in the config: the API key, and each field the spec marks
    `airbyte_secret` (the output's password or token), found by walking the spec, so that a secret
    field added to it is masked without a change here."""
    values: list[str] = []
    if isinstance(config, Mapping):
        values.append(config.get("api_key"))
        values.extend(_secret_values(own_schema(), config))
    return [form for value in values if isinstance(value, str) and value.strip() for form in secret_forms(value)]


def _secret_values(schema: Mapping[str, Any], value: Any) -> Iterator[Any]:
    if schema.get("airbyte_secret"):
        yield value
    for option in schema.get("oneOf", ()):
        yield from _secret_values(option, value)
    if isinstance(value, Mapping):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                yield from _secret_values(prop, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            yield from _secret_values(schema["items"], item)
