"""Size checks the sandbox runs before the filters, string methods and printing whose result can
dwarf their input, so that a template is stopped before it builds the text rather than after."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sized
from functools import wraps
from typing import Any

from jinja2.utils import Namespace, _PassArg
from markupsafe import Markup

from destination_mistral.enrich.template_budget import (
    MAX_RENDERED_CHARS,
    TemplateBudgetExceeded,
    produce,
    too_long,
)


def text_size(value: Any, limit: int = MAX_RENDERED_CHARS) -> int:
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
            # Jinja's Namespace has no public accessor for the attributes it prints.
            stack.append(dict(item._Namespace__attrs))
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


def check_printable(value: Any) -> None:
    # A container is turned into text by printing it, by `~`, and by most filters, and a template can
    # make one that prints far larger than it is (`[s, s, s]`, nested); a string is bounded when it is
    # made, so only containers need the walk. Scalars, by far the most common, return at once.
    if type(value) in _SCALARS:
        return
    if isinstance(value, _CONTAINERS) and text_size(value) > MAX_RENDERED_CHARS:
        raise too_long("the text of a list or mapping")


_FORMAT_NUMBER = re.compile(r"\d{7,}")


def check_format(template: Any, args: tuple, kwargs: Mapping[str, Any]) -> None:
    """`'%0999999999d' % 1`, `'{:>999999999}'.format(1)`, `'%*s' % (10**9, '')`: a width or precision,
    written in the format or passed as an argument, sizes the result before any check can see it."""
    if isinstance(template, str):
        for number in _FORMAT_NUMBER.findall(template):
            if int(number) > MAX_RENDERED_CHARS:
                raise too_long("a formatted value")
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_RENDERED_CHARS:
            raise too_long("a formatted value")
        check_printable(value)


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_RENDERED_CHARS:
        raise too_long("a padded string")


def _check_joined(items: Any, separator: Any) -> None:
    if isinstance(items, Sized):
        size = text_size(items) if isinstance(items, (list, tuple)) else 0
        if isinstance(separator, str):
            size += len(separator) * len(items)
        if size > MAX_RENDERED_CHARS:
            raise too_long("a joined string")


def _check_replaced(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        hits = text.count(old)
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        if len(text) + hits * (len(new) - len(old)) > MAX_RENDERED_CHARS:
            raise too_long("a replaced string")


def check_sized(result: Any) -> Any:
    if isinstance(result, str):
        if len(result) > MAX_RENDERED_CHARS:
            raise too_long("a string")
        produce(len(result))
    return result


def _arg(args: tuple, kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _check_replace_call(text: Any, args: tuple, kwargs: Mapping[str, Any]) -> None:
    # The `replace` filter and `str.replace` take the same arguments after the text.
    _check_replaced(
        text, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"), _arg(args, kwargs, 2, "count", -1)
    )


def _check_width_call(text: Any, args: tuple, kwargs: Mapping[str, Any]) -> None:
    _check_width(_arg(args, kwargs, 0, "width"))


# Checks run before a filter, on its arguments after the value: the filters whose output can be far
# larger than their input.
_FILTER_CHECKS = {
    "join": lambda v, a, k: _check_joined(v, _arg(a, k, 0, "d", "")),
    "replace": _check_replace_call,
    "center": _check_width_call,
    "indent": lambda v, a, k: _check_indent(v, _arg(a, k, 0, "width", 4)),
    "format": check_format,
    "batch": lambda v, a, k: _check_width(_arg(a, k, 0, "linecount")),
    "slice": lambda v, a, k: _check_width(_arg(a, k, 0, "slices")),
    "sum": lambda v, a, k: _check_sum(_arg(a, k, 1, "start", 0)),
}


def _check_indent(text: Any, width: Any) -> None:
    if isinstance(text, str):
        unit = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        if len(text) + (text.count("\n") + 1) * unit > MAX_RENDERED_CHARS:
            raise too_long("an indented string")


def _check_sum(start: Any) -> None:
    # Summing lists re-copies the total at every item (quadratic): numbers only.
    if not isinstance(start, (int, float)):
        raise TemplateBudgetExceeded("`sum` adds numbers only")


def bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(func) is not None else 0
    check = _FILTER_CHECKS.get(name)

    @wraps(func)  # keeps jinja's pass_context / pass_eval_context marker
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in args[skip:]:
            check_printable(value)
        for value in kwargs.values():
            check_printable(value)
        if check is not None and len(args) > skip:
            if name == "join" and not isinstance(args[skip], Sized):
                # A lazy sequence (`map`, `select`) is counted once it is a list, so that the
                # separator's repetitions are known before the join.
                args = (*args[:skip], list(args[skip]), *args[skip + 1 :])
            check(args[skip], args[skip + 1 :], kwargs)
        return check_sized(func(*args, **kwargs))

    return bounded


# The string methods whose result can dwarf their input, and the check each needs first.
STR_METHOD_CHECKS = {
    "join": lambda s, a, k: _check_joined(_arg(a, k, 0, "iterable"), s),
    "replace": _check_replace_call,
    "center": _check_width_call,
    "ljust": _check_width_call,
    "rjust": _check_width_call,
    "zfill": _check_width_call,
    "expandtabs": lambda s, a, k: _check_width(s.count("\t") * (_arg(a, k, 0, "tabsize", 8) or 0)),
    "format": check_format,
    "format_map": check_format,
}
