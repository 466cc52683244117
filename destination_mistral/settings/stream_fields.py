"""Record fields named by the settings, checked against the streams' JSON schemas when `write`
starts. A template that names a field its stream does not have fails on every record, so the sync
would write nothing but error rows and still succeed: it is refused before the first record instead.

A stream whose schema lists no properties, or allows any others (`additionalProperties` true or a
schema, `patternProperties`), may carry any field, so nothing is refused for it. A template that
guards a name (`{{ title | default('') }}`, `{% if title is defined %}`) expects it to be absent
at times, so a guarded name is not refused either."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jinja2 import Environment, nodes
from jinja2.defaults import DEFAULT_NAMESPACE

from destination_mistral.settings.key_masking import key_kept_out
from destination_mistral.settings.typed import ChatSettings, DestinationConfig, EmbeddingSettings
from mistral_connection.errors import config_error

# The name under which templates see the whole record (templates.render).
RECORD = "record"
_GUARD_FILTERS = frozenset({"default", "d"})
_GUARD_TESTS = frozenset({"defined", "undefined", "none"})
# Names Jinja itself provides inside loops, macros and call blocks.
_JINJA_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})
_FIELDS_SHOWN = 12


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
                if not _declares(stream.json_schema, path):
                    raise config_error(_message(f"{where}.{setting}", path, label, stream.json_schema))


def named_fields(enrichment: Any) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(setting, field path) for each record field the enrichment reads unguarded."""
    if isinstance(enrichment, ChatSettings):
        yield from (("prompt_template", path) for path in template_fields(enrichment.prompt_template))
        if enrichment.system_prompt:
            yield from (("system_prompt", path) for path in template_fields(enrichment.system_prompt))
    elif isinstance(enrichment, EmbeddingSettings):
        yield from (("fields", path) for path in enrichment.fields)
        if enrichment.template:
            yield from (("template", path) for path in template_fields(enrichment.template))


def template_fields(text: str) -> list[tuple[str, ...]]:
    """The top-level record fields a template reads without a guard, in order of appearance: the
    names it reads and never sets itself, and `record.<name>` / `record['<name>']`."""
    # Parsed only: Jinja's own scope analysis (jinja2.meta) runs its compiler, which folds constant
    # expressions, and `{{ 'x' * 10**10 }}` would then be computed here, outside the sandbox.
    tree = Environment().parse(text)
    free = _free_names(tree)
    guarded = set()
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        guards = _GUARD_FILTERS if isinstance(node, nodes.Filter) else _GUARD_TESTS
        if node.name in guards:
            guarded.add(_field_name(node.node, free))
    found: dict[str, None] = {}
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        name = _field_name(node, free)
        if name and name != RECORD and name not in guarded:
            found.setdefault(name)
    return [(name,) for name in found]


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


def _field_name(node: Any, free: set[str]) -> str | None:
    """The record field an expression reads at the top level: `title` for a free name `title`,
    and for `record.title` or `record['title']`."""
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in free:
        return node.name
    if isinstance(node, nodes.Getattr) and _is_record(node.node):
        return node.attr
    if (
        isinstance(node, nodes.Getitem)
        and _is_record(node.node)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.arg.value
    return None


def _is_record(node: Any) -> bool:
    return isinstance(node, nodes.Name) and node.name == RECORD


def _declares(schema: Any, path: tuple[str, ...]) -> bool:
    """Whether a record of `schema` may hold `path`: yes unless some level lists its properties,
    allows no others and lacks the next name."""
    for name in path:
        properties = _closed_properties(schema)
        if properties is None:
            return True
        if name not in properties:
            return False
        schema = properties[name]
    return True


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


def _message(setting: str, path: tuple[str, ...], stream: str, schema: Mapping[str, Any]) -> str:
    field = ".".join(path)
    level = schema
    for name in path[:-1]:
        level = level["properties"][name]
    known = list(level["properties"])
    near = difflib.get_close_matches(path[-1], known, n=1)
    hint = f" Did you mean `{'.'.join((*path[:-1], near[0]))}`?" if near else ""
    shown = ", ".join(known[:_FIELDS_SHOWN]) + (", …" if len(known) > _FIELDS_SHOWN else "")
    guard = f" or guard it (`{{{{ {path[0]} | default('') }}}}`)" if setting.rsplit(".", 1)[-1] != "fields" else ""
    return (
        f"`{setting}` names the field `{field}`, which stream {stream!r} does not have (its schema lists: {shown}): "
        f"fix the name{guard}.{hint}"
    )
