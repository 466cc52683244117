"""The API key kept out of config errors. The messages are built from field paths and the spec, but
a few quote what the user wrote (Jinja's account of a template's syntax error, jsonschema's of a
broken response schema, a field a template names), and a key pasted into a template or a field by
mistake must not reach the logs through them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mistral_connection import secret_forms

MASK = "****"
# A shorter key cannot be told apart from ordinary words in a message; masking it would garble the
# message without protecting anything.
SHORTEST_MASKED = 8


@contextmanager
def key_kept_out(key: str) -> Iterator[None]:
    """Any error raised inside leaves with every form of `key` in its messages masked."""
    try:
        yield
    except Exception as error:
        _mask(error, key)
        raise


def _mask(error: Exception, key: str) -> None:
    forms = [form for form in secret_forms(key) if len(form) >= SHORTEST_MASKED]
    for attribute in ("message", "internal_message"):
        text = getattr(error, attribute, None)
        if isinstance(text, str):
            setattr(error, attribute, _masked(text, forms))
    error.args = tuple(_masked(arg, forms) if isinstance(arg, str) else arg for arg in error.args)


def _masked(text: str, forms: list[str]) -> str:
    for form in forms:
        text = text.replace(form, MASK)
    return text
