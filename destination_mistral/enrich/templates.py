"""Prompt and text templates. Templates come from whoever edits the connection, so they run in
Jinja's sandbox (no attribute access to Python internals) within a budget (template_sandbox.py,
template_budget.py), and a field a record lacks is an error for that record rather than a silent
empty string in a paid prompt. Also the text of an embedding built from a record's fields."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError

from destination_mistral.enrich.template_budget import (
    CURRENT_BUDGET,
    MAX_EXPONENT,
    MAX_INT_BITS,
    MAX_PRODUCED_CHARS,
    MAX_RENDERED_CHARS,
    MAX_SECONDS,
    MAX_STEPS,
    Budget,
    TemplateBudgetExceeded,
    too_long,
)
from destination_mistral.enrich.template_names import TEMPLATE_NAMES, names_in
from destination_mistral.enrich.template_sandbox import sandbox_environment, tojson
from destination_mistral.settings.rules import next_key
from mistral_connection.errors import config_error

__all__ = [
    "MAX_EXPONENT",
    "MAX_INT_BITS",
    "MAX_PRODUCED_CHARS",
    "MAX_RENDERED_CHARS",
    "MAX_SECONDS",
    "MAX_STEPS",
    "RecordError",
    "TemplateBudgetExceeded",
    "compile_template",
    "render",
    "text_from_fields",
]


class RecordError(Exception):
    """This record cannot be enriched; the message is safe to store (no record contents)."""


@lru_cache(maxsize=64)
def compile_template(text: str, where: str = "template"):
    environment = sandbox_environment()
    try:
        source = environment.parse(text)
        # Read before compiling: the compiler folds constants in the tree it is given.
        names = names_in(source)
        template = environment.from_string(source)
    except TemplateSyntaxError as error:
        raise config_error(f"`{where}` is not a valid Jinja template (line {error.lineno}: {error.message}).") from None
    _refuse_what_fails_every_record(source, environment, where)
    template.names_in_source = names
    return template


# A template is one text: there is no other template to load, so these fail on every record.
_LOADS = {
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.Extends: "extends",
}


def _refuse_what_fails_every_record(source: nodes.Template, environment: Any, where: str) -> None:
    """What Jinja accepts when compiling but fails on every render: loading another template, and a
    test it does not have (`is nosuchtest`; an unknown filter is already refused when compiling)."""
    for node in source.find_all(tuple(_LOADS)):
        raise config_error(
            f"`{where}` uses `{{% {_LOADS[type(node)]} %}}` (line {node.lineno}), but a template cannot load "
            "other templates: write the text into this template."
        )
    for node in source.find_all(nodes.Test):
        if node.name not in environment.tests:
            known = ", ".join(sorted(name for name in environment.tests if name.isidentifier()))
            raise config_error(
                f"`{where}` uses the test `{node.name}` (line {node.lineno}), which Jinja does not have: "
                f"use one of {known}."
            )


def render(template, record: Mapping[str, Any]) -> str:
    context = dict(record)
    context.setdefault("record", record)
    token = CURRENT_BUDGET.set(Budget())
    names_token = TEMPLATE_NAMES.set(getattr(template, "names_in_source", frozenset()))
    try:
        # Streamed rather than `template.render`, so that text written at the top level (a loop
        # printing a literal, say) is measured as it grows instead of after it fills the memory.
        parts = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise too_long("the rendered text")
            parts.append(chunk)
        return "".join(parts)
    except UndefinedError as error:
        # `RecordSafeUndefined` names the missing variable or key only when the template itself names it.
        raise RecordError(f"template: {error.message}") from None
    except TemplateBudgetExceeded as error:
        raise RecordError(_over_budget(str(error))) from None
    except SecurityError as error:
        raise RecordError(f"template: blocked by the sandbox ({_security_reason(error)})") from None
    except OverflowError as error:  # jinja's range() refuses more than 100,000 items this way
        raise RecordError(
            _over_budget("range too large" if "range" in str(error).lower() else "number too large")
        ) from None
    except RecursionError:
        raise RecordError("template: the record is nested too deeply to render") from None
    except MemoryError:
        raise RecordError("template: the rendered text does not fit in memory") from None
    except Exception as error:  # a filter applied to the wrong type, a division by zero, ...
        raise RecordError(f"template: {type(error).__name__}") from None
    finally:
        TEMPLATE_NAMES.reset(names_token)
        CURRENT_BUDGET.reset(token)


def _over_budget(reason: str) -> str:
    return f"template: blocked by the sandbox (over its budget: {reason}); simplify the template"


def _security_reason(error: SecurityError) -> str:
    text = str(error)
    # An attribute refused is named only when the template names it (`RecordSafeUndefined`); a call refused
    # is one of Jinja's unsafe callables, never a value from a record.
    return f"unsafe access: {text[:120]}" if text else "unsafe access"


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return tojson(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def value_at(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted field path, or None: a key holding the whole dotted name wins over the
    nested path (settings.rules.next_key), as the check of `fields` against the schema reads it."""
    value: Any = record
    while path:
        found = next_key(value, path) if isinstance(value, Mapping) else None
        if found is None:
            return None
        value, path = value[found[0]], path[found[1] :]
    return value


def text_from_fields(record: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> str:
    """The values at `paths`, one per line; missing or null values are left out, and a record that
    has none of them is an error (an empty string is not worth an embedding)."""
    parts: list[str] = []
    blank = False  # a field is there, with nothing but whitespace in it
    for path in paths:
        value = value_at(record, path)
        if value is None:
            continue
        text = _value_text(value)
        if text.strip():
            parts.append(text)
        else:
            blank = True
    if not parts:
        names = ", ".join(".".join(p) for p in paths)
        if blank:
            raise RecordError(f"the text to embed is empty (its fields hold only whitespace): {names}")
        raise RecordError(f"none of the fields to embed is present: {names}")
    return "\n".join(parts)
