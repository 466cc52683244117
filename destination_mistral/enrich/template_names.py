"""The names a template writes out, and the undefined value whose error message names a missing key
only when the template wrote that name: the message ends up in logs, traces and error rows, where
record data must not go."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.utils import missing, object_type_repr

# The names the template being rendered writes out: variables, attributes, and the constant keys and
# values it contains. A name Jinja reports as missing may instead have been computed from the record
# (`{{ labels[category] }}` looks up the record's category), and then it is the record's data.
TEMPLATE_NAMES: ContextVar[frozenset] = ContextVar("template_names", default=frozenset())


def names_in(source: nodes.Template) -> frozenset:
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
        return name in TEMPLATE_NAMES.get()
    except TypeError:  # an unhashable key (a list) can only have come from a computed value
        return False


class RecordSafeUndefined(StrictUndefined):
    """Jinja's strict undefined, whose message names the missing key or attribute only when the
    template names it."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        name = self._undefined_name
        named = name is not missing and _in_template(name)
        if self._undefined_exception is SecurityError:
            # The sandbox's hint quotes the attribute refused, which a lookup by a record value chose.
            if named:
                return self._undefined_hint or "unsafe access"
            return (
                f"access to an attribute of {object_type_repr(self._undefined_obj)} is unsafe"
                " (its name comes from the record)"
            )
        if self._undefined_hint or named:
            # Jinja's hints are its own text with names from the template.
            return super()._undefined_message
        if self._undefined_obj is missing:
            return "the template refers to a variable the record does not have (its name comes from the record)"
        return (
            "the template refers to a value the record does not have"
            f" ({object_type_repr(self._undefined_obj)} has no such key or attribute; its name comes from the record)"
        )
