"""Record fields named by the settings, checked against the streams' JSON schemas when `write`
starts. A template that names a field its stream does not have fails on every record, so the sync
would write nothing but error rows and still succeed: it is refused before the first record instead.

A stream whose schema lists no properties, or allows any others (`additionalProperties` true or a
schema, `patternProperties`), may carry any field, so nothing is refused for it. A template that
guards a name (`{{ title | default('') }}`, `{% if title is defined %}`) expects it to be absent
at times, so a guarded name is not refused either.

Nested fields are checked the same way, level by level: `review.nope` is refused when `review`'s
schema lists its properties without `nope` and allows no others, and `review.text` when `review`
is typed as something other than an object (a string, a list). A method of a mapping or string
(`record.items()`, `record.get('x')`, `review.upper()`) is not a field. A dotted path of the
embeddings' `fields` reads a field holding the whole dotted name when there is one (`a.b`), else
steps into the nested object, as the text to embed is read (settings.rules.next_key)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jinja2 import Environment, nodes
from jinja2.defaults import DEFAULT_NAMESPACE

from destination_mistral.settings.enrichment import (
    ChatSettings,
    ClassificationSettings,
    EmbeddingSettings,
    ModerationSettings,
    OcrSettings,
)
from destination_mistral.settings.key_masking import key_kept_out
from destination_mistral.settings.rules import next_key
from destination_mistral.settings.typed import (
    DestinationConfig,
)
from mistral_connection.errors import config_error

# The name under which templates see the whole record (templates.render).
RECORD = "record"
_GUARD_FILTERS = frozenset({"default", "d"})
_GUARD_TESTS = frozenset({"defined", "undefined", "none"})
# Names Jinja itself provides inside loops, macros and call blocks.
_JINJA_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})
_FIELDS_SHOWN = 12
# Attributes of a mapping: Jinja reads `record.items` as the method, never as a field named `items`.
_MAPPING_ATTRIBUTES = frozenset(dir(dict))
_NOT_OBJECTS = frozenset({"string", "integer", "number", "boolean", "null", "array"})
# Settings that name fields by dotted path (read with next_key), not through a template.
_PATH_SETTINGS = frozenset({"fields", "conversation_field", "document_field"})


def check_stream_fields(config: DestinationConfig, configured_streams: Iterable[Any]) -> None:
    """Raises a config error for the first field that a stream's enrichment names and its schema
    does not declare. `configured_streams` are configured catalog entries (`.stream.name`,
    `.stream.namespace`, `.stream.json_schema`)."""
    with key_kept_out(config.connection.api_key, *config.output.secrets):
        for configured in configured_streams:
            stream = configured.stream
            label = f"{stream.namespace}.{stream.name}" if stream.namespace else stream.name
            where = config.enrichment_location(stream.name)
            for setting, path in named_fields(config.enrichment_for(stream.name)):
                dotted = setting in _PATH_SETTINGS
                missing = _undeclared(stream.json_schema, path, dotted)
                if missing is not None:
                    raise config_error(_message(f"{where}.{setting}", path, label, *missing))


def named_fields(enrichment: Any) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(setting, field path) for each record field the enrichment reads unguarded."""
    if isinstance(enrichment, ChatSettings):
        yield from (("prompt_template", path) for path in template_fields(enrichment.prompt_template))
        if enrichment.system_prompt:
            yield from (("system_prompt", path) for path in template_fields(enrichment.system_prompt))
    elif isinstance(enrichment, (EmbeddingSettings, ModerationSettings, ClassificationSettings)):
        yield from (("fields", path) for path in enrichment.fields)
        if enrichment.template:
            yield from (("template", path) for path in template_fields(enrichment.template))
        if getattr(enrichment, "conversation_field", None):
            yield "conversation_field", enrichment.conversation_field
    elif isinstance(enrichment, OcrSettings):
        yield "document_field", enrichment.document_field


def template_fields(text: str) -> list[tuple[str, ...]]:
    """The record fields a template reads without a guard, in order of appearance, each as its
    path: the names it reads and never sets itself, `record.<name>` / `record['<name>']`, and the
    fields read inside them (`review.text`), a path kept only at its longest."""
    # Parsed only: Jinja's own scope analysis (jinja2.meta) runs its compiler, which folds constant
    # expressions, and `{{ 'x' * 10**10 }}` would then be computed here, outside the sandbox.
    tree = Environment().parse(text)
    free = _free_names(tree)
    called = {id(node.node) for node in tree.find_all(nodes.Call)}
    guarded = set()
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        guards = _GUARD_FILTERS if isinstance(node, nodes.Filter) else _GUARD_TESTS
        if node.name in guards:
            guarded.add(_field_path(node.node, free, called))
    found: dict[tuple[str, ...], None] = {}
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        path = _field_path(node, free, called)
        if path and not any(path[: len(guard)] == guard for guard in guarded if guard):
            found.setdefault(path)
    return [path for path in found if not any(len(other) > len(path) and other[: len(path)] == path for other in found)]


def _free_names(tree: nodes.Template) -> set[str]:
    """The names the template reads and defines nowhere: not a loop or `set` target, a macro or its
    parameter, an import, nor one of Jinja's own (`loop`, `range`, ...). A name defined anywhere is
    left out everywhere, which can only let a template through, never refuse one."""
    loaded, defined = set(), set(DEFAULT_NAMESPACE) | _JINJA_NAMES
    for node in tree.find_all(nodes.Name):
        (loaded if node.ctx == "load" else defined).add(node.name)
    for node in tree.find_all((nodes.Macro, nodes.Import, nodes.FromImport)):
        if isinstance(node, nodes.Macro):
            defined.add(node.name)
        elif isinstance(node, nodes.Import):
            defined.add(node.target)
        else:
            defined.update(name if isinstance(name, str) else name[1] for name in node.names)
    return loaded - defined


def _field_path(node: Any, free: set[str], called: set[int]) -> tuple[str, ...]:
    """The record field path an expression reads: ("title",) for a free name `title`, ("title",)
    for `record.title` or `record['title']`, ("review", "text") for `review.text`; the path stops
    at a method (`record.items()`, `review.get`), a computed key or an index. Empty for anything
    that is not a record field."""
    steps: list[str] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            key = node.attr
            method = id(node) in called or key in _MAPPING_ATTRIBUTES
        else:
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            method = False
        steps = [] if method or not isinstance(key, str) else [key, *steps]
        node = node.node
    if not isinstance(node, nodes.Name) or node.ctx != "load":
        return ()
    if node.name == RECORD:
        return tuple(steps)
    return (node.name, *steps) if node.name in free else ()


def _undeclared(schema: Any, path: tuple[str, ...], dotted: bool) -> tuple[tuple[str, ...], Any] | None:
    """None when a record of `schema` may hold `path`; otherwise the part of the path found before
    the first step it may not hold, and the schema at that level. Every level that lists its
    properties, allows no others and lacks the next name refuses it, and so does a level typed as
    something other than an object. `dotted` reads the path as `fields` are read (next_key)."""
    done: tuple[str, ...] = ()
    while path:
        properties = _closed_properties(schema)
        if properties is None:
            return (done, schema) if _not_an_object(schema) else None
        found = next_key(properties, path) if dotted else ((path[0], 1) if path[0] in properties else None)
        if found is None:
            return done, schema
        key, used = found
        schema, path, done = properties[key], path[used:], (*done, key)
    return None


def _not_an_object(schema: Any) -> bool:
    kinds = schema.get("type") if isinstance(schema, Mapping) else None
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return bool(kinds) and isinstance(kinds, list) and all(kind in _NOT_OBJECTS for kind in kinds)


def _closed_properties(schema: Any) -> Mapping[str, Any] | None:
    if not isinstance(schema, Mapping):
        return None
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return None
    extra = schema.get("additionalProperties")
    if extra is True or isinstance(extra, Mapping) or schema.get("patternProperties"):
        return None
    return properties


def _message(setting: str, path: tuple[str, ...], stream: str, found: tuple[str, ...], level: Any) -> str:
    field = ".".join(path)
    guard = (
        f" or guard it (`{{{{ {field} | default('') }}}}`)" if setting.rsplit(".", 1)[-1] not in _PATH_SETTINGS else ""
    )
    properties = _closed_properties(level)
    if properties is None:  # a level typed as a string, a number or a list
        kinds = level.get("type")
        kind = " or ".join(kinds) if isinstance(kinds, list) else kinds
        return (
            f"`{setting}` names the field `{field}`, but in stream {stream!r} `{'.'.join(found)}` is {kind}, "
            f"which holds no fields: fix the path{guard}."
        )
    known = list(properties)
    rest = path[sum(key.count(".") + 1 for key in found) :]
    near = difflib.get_close_matches(".".join(rest), known, n=1) or difflib.get_close_matches(rest[0], known, n=1)
    hint = f" Did you mean `{'.'.join((*found, near[0]))}`?" if near else ""
    shown = ", ".join(known[:_FIELDS_SHOWN]) + (", …" if len(known) > _FIELDS_SHOWN else "")
    where = f"its `{'.'.join(found)}` lists" if found else "its schema lists"
    return (
        f"`{setting}` names the field `{field}`, which stream {stream!r} does not have ({where}: {shown}): "
        f"fix the name{guard}.{hint}"
    )
