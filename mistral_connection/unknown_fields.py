"""Fields a config holds that its form has not: a field of another option (`chunking` under the chat
mode) or a misspelt one (`max_token`). The schema lets both pass (an option of a `oneOf` takes any
other key), and the destination would silently do without them: chunking asked for and not done, a
limit set and not applied. Keys at the config's top level are left alone, since one config file may
serve the source as well, and hold fields of the other connector. Both connectors check their own
blocks with it: the destination its settings, each the credential block's `key_placement`."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from mistral_connection.field_words import FieldPath, discriminator, dotted, or_words

# Listed in a message only up to this many; past it the form is where to look.
_MOST_FIELDS_NAMED = 12


def unknown_field_problem(config: Mapping[str, Any], properties: Mapping[str, Any]) -> str | None:
    """The first field below the top level of `properties` (a form's top-level fields and their
    schemas) that the form does not have, told with its fix; None when every field is the form's."""
    for name, schema in properties.items():
        if name in config:
            problem = _walk(config[name], schema, (name,))
            if problem:
                return problem
    return None


def _walk(value: Any, schema: Mapping[str, Any], where: FieldPath) -> str | None:
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            problem = _walk(item, schema["items"], (*where, index))
            if problem:
                return problem
        return None
    if not isinstance(value, Mapping):
        return None
    options = schema.get("oneOf")
    if options:
        key = discriminator(options)
        chosen = next((o for o in options if key and o["properties"][key].get("const") == value.get(key)), None)
        return _object(value, chosen, where, options, key) if chosen else None
    return _object(value, schema, where, [], None) if schema.get("properties") else None


def _object(
    value: Mapping[str, Any],
    schema: Mapping[str, Any],
    where: FieldPath,
    options: list[Mapping[str, Any]],
    key: str | None,
) -> str | None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in value:
        if name in properties:
            continue
        field = f"`{dotted((*where, name))}`"
        owners = [o["properties"][key]["const"] for o in options if key and name in o.get("properties", {})]
        if owners:
            return (
                f"{field} belongs to the {or_words(owners)} {key} of `{dotted(where)}`, not to {value[key]}: "
                f"remove it, or set `{dotted((*where, key))}` to {or_words(owners)}."
            )
        close = difflib.get_close_matches(name, list(properties), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        others: dict[str, list[Any]] = {}
        for option in options if key else []:
            for other in option.get("properties", {}):
                others.setdefault(other, []).append(option["properties"][key]["const"])
        close_elsewhere = difflib.get_close_matches(name, list(others), n=1) if not close else []
        if close_elsewhere:
            hint = f" Did you mean `{close_elsewhere[0]}`, of the {or_words(others[close_elsewhere[0]])} {key}?"
        names = list(properties)
        listed = f" Its fields: {', '.join(names)}." if len(names) <= _MOST_FIELDS_NAMED else ""
        return f"{field} is not a field of `{dotted(where)}`: remove it.{hint}{listed}"
    for name, item in value.items():
        problem = _walk(item, properties[name], (*where, name))
        if problem:
            return problem
    return None
