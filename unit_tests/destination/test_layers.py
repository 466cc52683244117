"""The destination's layers import only downward, as ARCHITECTURE.md draws them: a module that
reaches up (http importing a record's enricher, a sink calling the pipeline) is refused here rather
than found in review."""

import ast
from pathlib import Path

import destination_mistral

PACKAGE = Path(destination_mistral.__file__).parent
ENTRY = {"__init__", "__main__", "run", "destination"}
# What each layer may import from the package besides itself; mistral_connection is open to all.
ALLOWED = {
    # The `load` command, at the entry points' level: it hands what it builds to sync/ as `write` does.
    "local_files": {"sync", "settings", "protocol"},
    # The `search` command, at the same level: it reads an output and embeds one query.
    "search": {"sinks", "enrich", "http", "settings", "protocol"},
    "sync": {"sinks", "enrich", "http", "settings", "protocol"},
    "sinks": {"enrich", "settings"},
    "enrich": {"http", "settings"},
    "http": {"settings"},
    "settings": {"enrich"},  # only rules.py, to compile templates as `write` would
    "protocol": set(),
}
# The narrow uses that cross into a higher layer, by module.
NARROW = {
    ("sinks", "enrich"): {"destination_mistral.enrich.results", "destination_mistral.enrich.embeddings"},
    ("settings", "enrich"): {"destination_mistral.enrich.templates"},
}


def imports_of(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_layers_import_only_what_they_may():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            assert path.stem in ENTRY, f"{path.name}: a module outside the layers"
            continue
        layer = parts[0]
        for module in imports_of(path):
            names = module.split(".")
            if names[0] != "destination_mistral" or len(names) < 2 or names[1] == layer:
                continue
            target = names[1]
            narrow = NARROW.get((layer, target))
            if target not in ALLOWED[layer] or (narrow is not None and module not in narrow):
                wrong.append(f"{'/'.join(parts)} imports {module}")
    assert not wrong, wrong
