"""The sandboxed Jinja environment templates run in: Jinja's immutable sandbox with the budget's
hooks compiled into every template (loops and calls count steps, operators, `~` and buffers check the
size of what they build) and every filter bounded."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import orjson
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from destination_mistral.enrich.template_budget import (
    CURRENT_BUDGET,
    MAX_EXPONENT,
    MAX_INT_BITS,
    MAX_RENDERED_CHARS,
    TemplateBudgetExceeded,
    produce,
    tick,
    too_long,
)
from destination_mistral.enrich.template_checks import (
    STR_METHOD_CHECKS,
    bounded_filter,
    check_format,
    check_printable,
    check_sized,
)
from destination_mistral.enrich.template_names import RecordSafeUndefined


def tojson(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _finalize(value: Any) -> Any:
    # A null field prints as nothing, not as the word "None" in a paid prompt.
    if value is None:
        return ""
    check_printable(value)
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
            raise too_long("the output of a macro or block")
        produce(len(text))
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
                raise too_long("a concatenation")
        elif operator == "%" and isinstance(left, str):
            check_format(left, right if isinstance(right, tuple) else (right,), {})
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, (str, list, tuple)):
            produce(len(result))
        return result

    # Jinja's own signature: its underscored names keep `self` and the context apart from the keyword
    # arguments a template passes.
    def call(__self, __context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        tick()
        if isinstance(__obj, LoopContext):
            # `loop(children)` in a recursive loop iterates outside the wrapped `for` iterable.
            args = (__self.budgeted_iter(args[0]), *args[1:]) if args else args
        else:
            method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
            owner = getattr(method, "__self__", None)
            if isinstance(owner, str):
                check = STR_METHOD_CHECKS.get(getattr(method, "__name__", ""))
                if check is not None:
                    check(owner, args, kwargs)
        return check_sized(super().call(__context, __obj, *args, **kwargs))

    @staticmethod
    def budgeted_iter(iterable: Any) -> Iterator[Any]:
        budget = CURRENT_BUDGET.get()
        if budget is None:
            yield from iterable
            return
        step = budget.tick
        for item in iterable:
            step()
            yield item

    @staticmethod
    def budgeted_concat(parts: tuple) -> str:
        texts = []
        size = 0
        for part in parts:
            check_printable(part)
            text = part if type(part) is str else str(part)
            size += len(text)
            texts.append(text)
        if size > MAX_RENDERED_CHARS:
            raise too_long("a `~` concatenation")
        produce(size)
        return "".join(texts)

    @staticmethod
    def budgeted_buffer() -> _TextBuffer:
        return _TextBuffer()


@lru_cache(maxsize=1)
def sandbox_environment() -> ImmutableSandboxedEnvironment:
    env = _Environment(undefined=RecordSafeUndefined, autoescape=False, keep_trailing_newline=False, finalize=_finalize)
    env.filters["tojson"] = tojson
    env.filters = {name: bounded_filter(name, func) for name, func in env.filters.items()}
    # lipsum(10**9) writes a billion paragraphs in one call, and a prompt has no use for it.
    env.globals.pop("lipsum", None)
    return env
