"""Prompt and text templates. Templates come from whoever edits the connection, so they run in
Jinja's sandbox (no attribute access to Python internals), and a field a record lacks is an error for
that record rather than a silent empty string in a paid prompt."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import orjson
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mistral_connection.errors import config_error


class RecordError(Exception):
    """This record cannot be enriched; the message is safe to store (no record contents)."""


def _tojson(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# A template may build text, not exhaust the machine: `'x' * 10**10` or `9 ** 9 ** 9` would take
# every byte of memory or minutes of CPU in one record.
MAX_RENDERED_CHARS = 1_000_000
MAX_EXPONENT = 1000


def _finalize(value: Any) -> Any:
    # A null field prints as nothing, not as the word "None" in a paid prompt.
    return "" if value is None else value


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_RENDERED_CHARS:
                    raise SecurityError("repetition too large")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False, finalize=_finalize)
    env.filters["tojson"] = _tojson
    return env


@lru_cache(maxsize=64)
def compile_template(text: str, where: str = "template"):
    try:
        return _environment().from_string(text)
    except TemplateSyntaxError as error:
        raise config_error(f"`{where}` is not a valid Jinja template (line {error.lineno}: {error.message}).") from None


def render(template, record: Mapping[str, Any]) -> str:
    context = dict(record)
    context.setdefault("record", record)
    try:
        return template.render(context)
    except UndefinedError as error:
        # Jinja's message names the missing variable or key, never a value.
        raise RecordError(f"template: {error.message}") from None
    except SecurityError as error:
        raise RecordError(f"template: blocked by the sandbox ({_security_reason(error)})") from None
    except RecursionError:
        raise RecordError("template: the record is nested too deeply to render") from None
    except MemoryError:
        raise RecordError("template: the rendered text does not fit in memory") from None
    except Exception as error:  # a filter applied to the wrong type, a division by zero, ...
        raise RecordError(f"template: {type(error).__name__}") from None


def _security_reason(error: SecurityError) -> str:
    text = str(error)
    if text in ("exponent too large", "repetition too large"):
        return text
    # Jinja's message names the attribute or call refused, which is the template's text, never the record's.
    return f"unsafe access: {text[:120]}" if text else "unsafe access"


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return _tojson(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text_from_fields(record: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> str:
    """The values at `paths`, one per line; missing or null values are left out, and a record that
    has none of them is an error (an empty string is not worth an embedding)."""
    parts: list[str] = []
    for path in paths:
        value: Any = record
        for key in path:
            if isinstance(value, Mapping) and key in value:
                value = value[key]
            else:
                value = None
                break
        if value is None:
            continue
        text = _value_text(value)
        if text.strip():
            parts.append(text)
    if not parts:
        raise RecordError("none of the fields to embed is present: " + ", ".join(".".join(p) for p in paths))
    return "\n".join(parts)
