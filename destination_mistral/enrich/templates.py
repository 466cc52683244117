"""Prompt and text templates. Templates come from whoever edits the connection, so they run in
Jinja's sandbox (no attribute access to Python internals), and a field a record lacks is an error for
that record rather than a silent empty string in a paid prompt."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sized
from contextvars import ContextVar
from functools import lru_cache, wraps
from time import monotonic
from typing import Any

import orjson
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg, missing, object_type_repr
from markupsafe import Markup

from mistral_connection.errors import config_error


class RecordError(Exception):
    """This record cannot be enriched; the message is safe to store (no record contents)."""


def _tojson(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# The render budget. A template may build text, not exhaust the machine: the sandbox stops attribute
# access to Python internals but not work, and `{% for a in range(100000) %}{% for b in range(100000)
# %}...`, `'x' * 10**10` or a macro that calls itself twice per level would otherwise hold a sync for
# hours or take every byte of memory, for every record. Each limit ends that record with an error row
# and lets the sync go on. They are far above what a prompt needs: the largest context window is
# about a million characters, and a normal render takes microseconds and a few dozen steps.
MAX_RENDERED_CHARS = 1_000_000  # the rendered text, and any string or buffer built on the way
MAX_STEPS = 1_000_000  # loop iterations plus calls (macros, methods, globals), per render
MAX_SECONDS = 2.0  # wall clock per render, the backstop for steps that are each expensive
# All the text filters, calls, operators and buffers make in one render, kept or not: stops a loop
# or a lazy `map` from piling up strings that are each under the size limit.
MAX_PRODUCED_CHARS = 10 * MAX_RENDERED_CHARS
MAX_EXPONENT = 1000
MAX_INT_BITS = 1_000_000  # integers a template computes (3.3 MB of digits already)
_CLOCK_EVERY = 64  # read the clock every this many steps: a clock read costs more than a step


class TemplateBudgetExceeded(Exception):
    """A render went over one of the limits above; the message names the limit, never record text."""


class _Budget:
    __slots__ = ("steps", "deadline", "produced")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = monotonic() + MAX_SECONDS
        self.produced = 0

    def tick(self) -> None:
        self.steps -= 1
        if not self.steps % _CLOCK_EVERY:
            if self.steps <= 0:
                raise TemplateBudgetExceeded(f"more than {MAX_STEPS:,} loop iterations and calls")
            if monotonic() > self.deadline:
                raise TemplateBudgetExceeded(f"took more than {MAX_SECONDS:g} s")

    def produce(self, chars: int) -> None:
        self.produced += chars
        if self.produced > MAX_PRODUCED_CHARS:
            raise TemplateBudgetExceeded(f"built more than {MAX_PRODUCED_CHARS:,} characters of text")


# The budget of the render in progress. A context variable rather than an attribute of the shared
# environment, so that renders in several threads each have their own. Outside `render` (config
# checks compiling a template) there is none and only the size limits apply.
_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _produce(chars: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.produce(chars)


def _too_long(what: str) -> TemplateBudgetExceeded:
    return TemplateBudgetExceeded(f"{what} would be longer than {MAX_RENDERED_CHARS:,} characters")


def _text_size(value: Any, limit: int = MAX_RENDERED_CHARS) -> int:
    """About how long `str(value)` or its JSON would be, counting a shared item once per place it
    appears (`[s] * 1000` is a thousand copies of s once printed), stopping as soon as it passes
    `limit`, so that the estimate itself is bounded."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif type(item) in _SCALARS:
            total += 8
        elif isinstance(item, Namespace):  # printed with all its attributes
            total += 16
            stack.append(dict(item._Namespace__attrs))  # noqa: SLF001 (no public accessor)
        elif isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += 8
        if total > limit:
            break
    return total


_SCALARS = frozenset({str, int, float, bool, type(None), Markup})
_CONTAINERS = (list, tuple, dict, set, frozenset, Namespace, Mapping)


def _check_printable(value: Any) -> None:
    # A container is turned into text by printing it, by `~`, and by most filters, and a template can
    # make one that prints far larger than it is (`[s, s, s]`, nested); a string is bounded when it is
    # made, so only containers need the walk. Scalars, by far the most common, return at once.
    if type(value) in _SCALARS:
        return
    if isinstance(value, _CONTAINERS) and _text_size(value) > MAX_RENDERED_CHARS:
        raise _too_long("the text of a list or mapping")


_FORMAT_NUMBER = re.compile(r"\d{7,}")


def _check_format(template: Any, args: tuple, kwargs: Mapping[str, Any]) -> None:
    """`'%0999999999d' % 1`, `'{:>999999999}'.format(1)`, `'%*s' % (10**9, '')`: a width or precision,
    written in the format or passed as an argument, sizes the result before any check can see it."""
    if isinstance(template, str):
        for number in _FORMAT_NUMBER.findall(template):
            if int(number) > MAX_RENDERED_CHARS:
                raise _too_long("a formatted value")
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_RENDERED_CHARS:
            raise _too_long("a formatted value")
        _check_printable(value)


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_RENDERED_CHARS:
        raise _too_long("a padded string")


def _check_joined(items: Any, separator: Any) -> None:
    if isinstance(items, Sized):
        size = _text_size(items) if isinstance(items, (list, tuple)) else 0
        if isinstance(separator, str):
            size += len(separator) * len(items)
        if size > MAX_RENDERED_CHARS:
            raise _too_long("a joined string")


def _check_replaced(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        hits = text.count(old)
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        if len(text) + hits * (len(new) - len(old)) > MAX_RENDERED_CHARS:
            raise _too_long("a replaced string")


def _check_sized(result: Any) -> Any:
    if isinstance(result, str):
        if len(result) > MAX_RENDERED_CHARS:
            raise _too_long("a string")
        _produce(len(result))
    return result


def _arg(args: tuple, kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


# Checks run before a filter, on its arguments after the value: the filters whose output can be far
# larger than their input.
_FILTER_CHECKS = {
    "join": lambda v, a, k: _check_joined(v, _arg(a, k, 0, "d", "")),
    "replace": lambda v, a, k: _check_replaced(
        v, _arg(a, k, 0, "old"), _arg(a, k, 1, "new"), _arg(a, k, 2, "count", -1)
    ),
    "center": lambda v, a, k: _check_width(_arg(a, k, 0, "width")),
    "indent": lambda v, a, k: _check_indent(v, _arg(a, k, 0, "width", 4)),
    "format": lambda v, a, k: _check_format(v, a, k),
    "batch": lambda v, a, k: _check_width(_arg(a, k, 0, "linecount")),
    "slice": lambda v, a, k: _check_width(_arg(a, k, 0, "slices")),
    "sum": lambda v, a, k: _check_sum(_arg(a, k, 1, "start", 0)),
}


def _check_indent(text: Any, width: Any) -> None:
    if isinstance(text, str):
        unit = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        if len(text) + (text.count("\n") + 1) * unit > MAX_RENDERED_CHARS:
            raise _too_long("an indented string")


def _check_sum(start: Any) -> None:
    # Summing lists re-copies the total at every item (quadratic): numbers only.
    if not isinstance(start, (int, float)):
        raise TemplateBudgetExceeded("`sum` adds numbers only")


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(func) is not None else 0
    check = _FILTER_CHECKS.get(name)

    @wraps(func)  # keeps jinja's pass_context / pass_eval_context marker
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in args[skip:]:
            _check_printable(value)
        for value in kwargs.values():
            _check_printable(value)
        if check is not None and len(args) > skip:
            if name == "join" and not isinstance(args[skip], Sized):
                # A lazy sequence (`map`, `select`) is counted once it is a list, so that the
                # separator's repetitions are known before the join.
                args = (*args[:skip], list(args[skip]), *args[skip + 1 :])
            check(args[skip], args[skip + 1 :], kwargs)
        return _check_sized(func(*args, **kwargs))

    return bounded


# The string methods whose result can dwarf their input, and the check each needs first.
_STR_METHOD_CHECKS = {
    "join": lambda s, a, k: _check_joined(_arg(a, k, 0, "iterable"), s),
    "replace": lambda s, a, k: _check_replaced(
        s, _arg(a, k, 0, "old"), _arg(a, k, 1, "new"), _arg(a, k, 2, "count", -1)
    ),
    "center": lambda s, a, k: _check_width(_arg(a, k, 0, "width")),
    "ljust": lambda s, a, k: _check_width(_arg(a, k, 0, "width")),
    "rjust": lambda s, a, k: _check_width(_arg(a, k, 0, "width")),
    "zfill": lambda s, a, k: _check_width(_arg(a, k, 0, "width")),
    "expandtabs": lambda s, a, k: _check_width(s.count("\t") * (_arg(a, k, 0, "tabsize", 8) or 0)),
    "format": lambda s, a, k: _check_format(s, a, k),
    "format_map": lambda s, a, k: _check_format(s, a, k),
}


def _finalize(value: Any) -> Any:
    # A null field prints as nothing, not as the word "None" in a paid prompt.
    if value is None:
        return ""
    _check_printable(value)
    return value


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator with the budget's hooks: loops count their iterations, `~` checks
    the length it builds, and the buffers of macros, `{% set %}` blocks and filter blocks stop
    growing at the size limit (the top level is checked as it streams out, in `render`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_iterables: set[int] = set()

    def visit_For(self, node: nodes.For, frame: Any) -> None:
        # Jinja refuses custom node types, so the loop's iterable is marked here and wrapped when
        # `visit` writes it.
        self._loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) in self._loop_iterables:
            self._loop_iterables.discard(id(node))
            self.write("environment.budgeted_iter(")
            super().visit(node, *args, **kwargs)
            self.write(")")
            return None
        return super().visit(node, *args, **kwargs)

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.budgeted_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def buffer(self, frame: Any) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.budgeted_buffer()")


class _TextBuffer(list):
    """The output list of a macro or block, refusing to hold more than the size limit."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_RENDERED_CHARS:
            raise _too_long("the output of a macro or block")
        _produce(len(text))
        list.append(self, text)

    def extend(self, texts: Any) -> None:
        for text in texts:
            self.append(text)


class _Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise TemplateBudgetExceeded("exponent too large")
            if isinstance(left, int) and isinstance(right, int) and abs(left).bit_length() * right > MAX_INT_BITS:
                raise TemplateBudgetExceeded("number too large")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(times, int)
                    and len(seq) * times > MAX_RENDERED_CHARS
                ):
                    raise TemplateBudgetExceeded("repetition too large")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > MAX_INT_BITS
            ):
                raise TemplateBudgetExceeded("number too large")
        elif operator == "+":
            if (
                isinstance(left, (str, list, tuple))
                and isinstance(right, (str, list, tuple))
                and len(left) + len(right) > MAX_RENDERED_CHARS
            ):
                raise _too_long("a concatenation")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else (right,), {})
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, (str, list, tuple)):
            _produce(len(result))
        return result

    def call(__self, __context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja's signature)
        _tick()
        if isinstance(__obj, LoopContext):
            # `loop(children)` in a recursive loop iterates outside the wrapped `for` iterable.
            args = (__self.budgeted_iter(args[0]), *args[1:]) if args else args
        else:
            method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
            owner = getattr(method, "__self__", None)
            if isinstance(owner, str):
                check = _STR_METHOD_CHECKS.get(getattr(method, "__name__", ""))
                if check is not None:
                    check(owner, args, kwargs)
        return _check_sized(super().call(__context, __obj, *args, **kwargs))

    @staticmethod
    def budgeted_iter(iterable: Any) -> Iterator[Any]:
        budget = _BUDGET.get()
        if budget is None:
            yield from iterable
            return
        tick = budget.tick
        for item in iterable:
            tick()
            yield item

    @staticmethod
    def budgeted_concat(parts: tuple) -> str:
        texts = []
        size = 0
        for part in parts:
            _check_printable(part)
            text = part if type(part) is str else str(part)
            size += len(text)
            texts.append(text)
        if size > MAX_RENDERED_CHARS:
            raise _too_long("a `~` concatenation")
        _produce(size)
        return "".join(texts)

    @staticmethod
    def budgeted_buffer() -> _TextBuffer:
        return _TextBuffer()


# The names the template being rendered writes out: variables, attributes, and the constant keys and
# values it contains. A name Jinja reports as missing may instead have been computed from the record
# (`{{ labels[category] }}` looks up the record's category), and then it is the record's data.
_TEMPLATE_NAMES: ContextVar[frozenset] = ContextVar("template_names", default=frozenset())


def _names_in(source: nodes.Template) -> frozenset:
    names: set[Any] = set()
    for node in source.find_all((nodes.Name, nodes.Getattr, nodes.Const, nodes.Keyword)):
        if isinstance(node, nodes.Name):
            names.add(node.name)
        elif isinstance(node, nodes.Getattr):
            names.add(node.attr)
        elif isinstance(node, nodes.Keyword):
            names.add(node.key)
        elif isinstance(node.value, (str, int, float)):
            names.add(node.value)
    return frozenset(names)


def _in_template(name: Any) -> bool:
    try:
        return name in _TEMPLATE_NAMES.get()
    except TypeError:  # an unhashable key (a list) can only have come from a computed value
        return False


class _Undefined(StrictUndefined):
    """Jinja's strict undefined, whose message names the missing key or attribute only when the
    template names it: the message ends up in logs, traces and error rows, where record data must
    not go."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        name = self._undefined_name
        named = name is not missing and _in_template(name)
        if self._undefined_exception is SecurityError:
            # The sandbox's hint quotes the attribute refused, which a lookup by a record value chose.
            if named:
                return self._undefined_hint or "unsafe access"
            return f"access to an attribute of {object_type_repr(self._undefined_obj)} is unsafe (its name comes from the record)"
        if self._undefined_hint or named:
            # Jinja's hints are its own text with names from the template.
            return super()._undefined_message
        if self._undefined_obj is missing:
            return "the template refers to a variable the record does not have (its name comes from the record)"
        return (
            "the template refers to a value the record does not have"
            f" ({object_type_repr(self._undefined_obj)} has no such key or attribute; its name comes from the record)"
        )


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _Environment(undefined=_Undefined, autoescape=False, keep_trailing_newline=False, finalize=_finalize)
    env.filters["tojson"] = _tojson
    env.filters = {name: _bounded_filter(name, func) for name, func in env.filters.items()}
    # lipsum(10**9) writes a billion paragraphs in one call, and a prompt has no use for it.
    env.globals.pop("lipsum", None)
    return env


@lru_cache(maxsize=64)
def compile_template(text: str, where: str = "template"):
    environment = _environment()
    try:
        source = environment.parse(text)
        # Read before compiling: the compiler folds constants in the tree it is given.
        names = _names_in(source)
        template = environment.from_string(source)
    except TemplateSyntaxError as error:
        raise config_error(f"`{where}` is not a valid Jinja template (line {error.lineno}: {error.message}).") from None
    template.names_in_source = names
    return template


def render(template, record: Mapping[str, Any]) -> str:
    context = dict(record)
    context.setdefault("record", record)
    token = _BUDGET.set(_Budget())
    names_token = _TEMPLATE_NAMES.set(getattr(template, "names_in_source", frozenset()))
    try:
        # Streamed rather than `template.render`, so that text written at the top level (a loop
        # printing a literal, say) is measured as it grows instead of after it fills the memory.
        parts = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise _too_long("the rendered text")
            parts.append(chunk)
        return "".join(parts)
    except UndefinedError as error:
        # `_Undefined` names the missing variable or key only when the template itself names it.
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
        _TEMPLATE_NAMES.reset(names_token)
        _BUDGET.reset(token)


def _over_budget(reason: str) -> str:
    return f"template: blocked by the sandbox (over its budget: {reason}); simplify the template"


def _security_reason(error: SecurityError) -> str:
    text = str(error)
    # An attribute refused is named only when the template names it (`_Undefined`); a call refused
    # is one of Jinja's unsafe callables, never a value from a record.
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
