"""The registry metadata, the Dockerfiles and the docs say the same as the connectors' own specs.

A field added to spec.yaml or a connector's spec_fields.yaml must be documented in that connector's
configuration reference, with its default; a version bump must reach metadata, image labels and the
changelog together. No sockets: specs come from the connector classes, streams from the manifest."""

from __future__ import annotations

import ast
import json
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from airbyte_cdk.models import ConnectorSpecificationSerializer
from airbyte_cdk.models.connector_metadata import MetadataFile
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
CONNECTORS = {
    "source-mistral": REPO / "docs" / "integrations" / "sources" / "mistral.md",
    "destination-mistral": REPO / "docs" / "integrations" / "destinations" / "mistral.md",
}
REQUIRED_METADATA = (
    "definitionId",
    "dockerRepository",
    "dockerImageTag",
    "connectorType",
    "connectorSubtype",
    "allowedHosts",
    "releaseStage",
    "supportLevel",
    "tags",
    "documentationUrl",
    "license",
    "icon",
    "name",
)
REQUIRED_DOC_SECTIONS = (
    "Overview",
    "Prerequisites",
    "Setup guide",
    "Supported sync modes",
    "Configuration reference",
    "Limitations and troubleshooting",
    "Changelog",
)


def _spec(connector: str) -> Mapping[str, Any]:
    import logging

    if connector == "source-mistral":
        from source_mistral.source import SourceMistral

        spec = SourceMistral().spec(logging.getLogger("test"))
    else:
        from destination_mistral.destination import DestinationMistral

        spec = DestinationMistral().spec(logging.getLogger("test"))
    return ConnectorSpecificationSerializer.dump(spec)


def _metadata(connector: str) -> Mapping[str, Any]:
    return yaml.safe_load((REPO / "connectors" / connector / "metadata.yaml").read_text(encoding="utf-8"))["data"]


def _doc(connector: str) -> str:
    return CONNECTORS[connector].read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"section '## {title}' missing"
    return match.group(1)


def _property_paths(
    schema: Mapping[str, Any], prefix: str = "", seen: set[str] | None = None
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every property path of a spec: `a`, `a.b` through objects and oneOf variants, `a[].b` through
    arrays. A sub-schema met twice (the enrichment modes, shared by YAML anchor with the per-stream
    overrides) is walked once: the docs describe it once."""
    seen = set() if seen is None else seen
    variants = [schema] + list(schema.get("oneOf") or [])
    for variant in variants:
        for name, prop in (variant.get("properties") or {}).items():
            path = f"{prefix}{name}"
            yield path, prop
            fingerprint = json.dumps(prop.get("oneOf") or prop.get("properties") or {}, sort_keys=True)
            if fingerprint != "{}" and fingerprint in seen:
                continue
            seen.add(fingerprint)
            if prop.get("type") == "array" and isinstance(prop.get("items"), Mapping):
                yield from _property_paths(prop["items"], f"{path}[].", seen)
            else:
                yield from _property_paths(prop, f"{path}.", seen)


def _reference_rows(doc: str) -> dict[str, str]:
    rows = {}
    for line in _section(doc, "Configuration reference").splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def _rendered(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


# ---- metadata -------------------------------------------------------------------------------------


@pytest.mark.parametrize("connector", CONNECTORS)
def test_metadata_has_every_registry_field_and_parses_with_the_cdk_model(connector):
    data = _metadata(connector)
    missing = [key for key in REQUIRED_METADATA if key not in data]
    assert not missing, f"{connector}/metadata.yaml lacks {missing}"
    parsed = MetadataFile.from_file(REPO / "connectors" / connector / "metadata.yaml")
    assert parsed.data.dockerRepository == f"airbyte/{connector}"
    assert parsed.data.language.value == "python", "tags must carry language:python"
    assert str(uuid.UUID(data["definitionId"])) == data["definitionId"], "definitionId must be a UUID"
    assert data["connectorType"] == connector.split("-")[0]
    assert data["releaseStage"] in ("alpha", "beta", "generally_available", "custom")
    assert data["supportLevel"] in ("community", "certified", "archived")
    assert (REPO / "connectors" / connector / data["icon"]).is_file(), f"icon {data['icon']} missing"
    assert "<svg" in (REPO / "connectors" / connector / data["icon"]).read_text(encoding="utf-8")


def test_the_two_connectors_have_distinct_definition_ids():
    assert _metadata("source-mistral")["definitionId"] != _metadata("destination-mistral")["definitionId"]


@pytest.mark.parametrize("connector", CONNECTORS)
def test_metadata_documentation_url_is_the_specs(connector):
    assert _metadata(connector)["documentationUrl"] == _spec(connector)["documentationUrl"], (
        f"{connector}: metadata.yaml documentationUrl and the spec's documentationUrl differ"
    )


@pytest.mark.parametrize("connector", CONNECTORS)
def test_metadata_documentation_url_points_at_its_doc_page(connector):
    url = urlparse(_metadata(connector)["documentationUrl"])
    doc = CONNECTORS[connector].relative_to(REPO / "docs").with_suffix("")
    assert url.path.rstrip("/").endswith(str(doc)), f"{url.geturl()} should end with /{doc}"


@pytest.mark.parametrize("connector", CONNECTORS)
def test_metadata_version_is_the_package_version(connector):
    assert _metadata(connector)["dockerImageTag"] == importlib_metadata.version("airbyte-mistral")


# The forms of base_url the README accepts, and a config without it; the proxy takes the key in the
# query string.
BASE_URL_FORMS = (
    None,
    "https://api.mistral.ai",
    "https://api.mistral.ai/v1/chat/completions",
    "api.eu.mistral.ai",
    "https://api.us.mistral.ai/v1/",
    "https://proxy.example.com/mistral/v1",
    "http://127.0.0.1:8089",
)
_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def _platform_host(value: str) -> str:
    """The host Airbyte's platform takes from a config value it puts into allowedHosts (a URL gives
    its host, a bare host stays as it is)."""
    return urlparse(value if "://" in value else f"x://{value}").hostname or value


def _resolved_allowed_hosts(connector: str, config: Mapping[str, Any]) -> list[str]:
    """allowedHosts as the platform applies them to a connection: each `${dotted.path}` filled from
    the config, an entry it cannot fill dropped (ConfigReplacer in airbyte-platform)."""
    resolved = []
    for host in _metadata(connector)["allowedHosts"]["hosts"]:
        filled = host
        for path in _PLACEHOLDER.findall(host):
            value: Any = config
            for part in path.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                filled = filled.replace(f"${{{path}}}", _platform_host(str(value)))
        if "${" not in filled:
            resolved.append(filled)
    return resolved


@pytest.mark.parametrize("connector", CONNECTORS)
@pytest.mark.parametrize("base_url", BASE_URL_FORMS)
def test_allowed_hosts_let_the_connector_reach_the_configured_base_url(connector, base_url):
    from mistral_connection.connection import MistralConnection

    config: dict[str, Any] = {"api_key": "key"}
    if base_url is not None:
        config["base_url"] = base_url
    if base_url and "proxy" in base_url:
        config["key_placement"] = {"method": "query_parameter", "parameter_name": "api_token"}
    target = urlparse(MistralConnection.from_config(config).api_root).hostname
    assert target in _resolved_allowed_hosts(connector, config), (
        f"{connector}: a platform enforcing allowedHosts would block {target} (base_url {base_url!r})"
    )


@pytest.mark.parametrize("connector", CONNECTORS)
def test_allowed_hosts_fix_no_host_but_the_default_and_name_existing_fields(connector):
    hosts = _metadata(connector)["allowedHosts"]["hosts"]
    spec = _spec(connector)["connectionSpecification"]
    default = urlparse(spec["properties"]["base_url"]["default"]).hostname
    fixed = [host for host in hosts if "${" not in host]
    assert fixed == [default], f"{connector}: hosts not taken from the config should be base_url's default only"
    paths = {path for path, _ in _property_paths(spec)}
    for host in hosts:
        for path in _PLACEHOLDER.findall(host):
            assert path in paths, f"{connector}: allowedHosts entry {host} names no spec property"
    assert "${base_url}" in hosts


def test_connector_subtypes_are_those_of_airbytes_api_sources_and_vector_store_destinations():
    assert _metadata("source-mistral")["connectorSubtype"] == "api"
    assert _metadata("destination-mistral")["connectorSubtype"] == "vectorstore"


@pytest.mark.parametrize("connector", CONNECTORS)
def test_ab_internal_scores_are_valid_and_match_the_support_level(connector):
    data = _metadata(connector)
    scores = data["ab_internal"]
    assert set(scores) <= {"sl", "ql", "isEnterprise", "requireVersionIncrementsInPullRequests"}
    assert scores["sl"] in (0, 100, 200, 300) and scores["ql"] in (0, 100, 200, 300, 400, 500, 600)
    if data["supportLevel"] == "community":
        assert scores["sl"] == 100, "a community connector has support level 100"


@pytest.mark.parametrize("connector", CONNECTORS)
def test_suites_that_can_run_against_the_api_declare_its_key_as_a_test_secret(connector):
    suites = {s["suite"]: s for s in _metadata(connector)["connectorTestSuitesOptions"]}
    assert set(suites) <= {"unitTests", "integrationTests", "acceptanceTests", "liveTests"}
    assert "testSecrets" not in suites["unitTests"], "unit tests use no sockets and no key"
    for name in ("integrationTests", "acceptanceTests"):
        assert suites[name]["testSecrets"] == [
            {
                "name": f"SECRET_{connector.upper()}__CREDS",
                "fileName": "config.json",
                "secretStore": {"type": "GSM", "alias": "airbyte-connector-testing-secret-store"},
            }
        ], f"{connector}: {name} secret"


# ---- Dockerfiles ----------------------------------------------------------------------------------


def _dockerfile(connector: str) -> str:
    return (REPO / "connectors" / connector / "Dockerfile").read_text(encoding="utf-8")


@pytest.mark.parametrize("connector", CONNECTORS)
def test_dockerfile_base_image_is_a_build_arg_defaulting_to_the_metadata_pin(connector):
    text = _dockerfile(connector)
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.M)
    assert match, "BASE_IMAGE must be a build argument with a default"
    assert match.group(1) == _metadata(connector)["connectorBuildOptions"]["baseImage"]
    assert re.fullmatch(
        r"docker\.io/airbyte/python-connector-base:\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", match.group(1)
    ), "pin the base image by tag and digest"
    assert re.findall(r"^FROM \$\{BASE_IMAGE\}", text, flags=re.M), "every stage builds FROM ${BASE_IMAGE}"


@pytest.mark.parametrize("connector", CONNECTORS)
def test_dockerfile_entrypoint_is_the_console_script_and_labels_match_metadata(connector):
    text = _dockerfile(connector)
    data = _metadata(connector)
    assert f'ENTRYPOINT ["{connector}"]' in text
    assert f'ENV AIRBYTE_ENTRYPOINT="{connector}"' in text
    assert f"LABEL io.airbyte.name={data['dockerRepository']}" in text
    assert f"LABEL io.airbyte.version={data['dockerImageTag']}" in text
    scripts = {
        ep.name
        for ep in importlib_metadata.distribution("airbyte-mistral").entry_points
        if ep.group == "console_scripts"
    }
    assert connector in scripts, f"the entrypoint {connector} must be a console script of the package"


PACKAGES = {"source-mistral": "source_mistral", "destination-mistral": "destination_mistral"}
SOURCE_REQUIREMENTS = REPO / "connectors" / "source-mistral" / "requirements.txt"


@pytest.mark.parametrize("connector", CONNECTORS)
def test_dockerfile_copies_the_shared_package_and_its_own_but_not_the_other_connectors(connector):
    text = _dockerfile(connector)
    copied = set(re.findall(r"^COPY (?!--)(\S+) ", text, flags=re.M))
    other = next(c for c in CONNECTORS if c != connector)
    assert {"mistral_connection", PACKAGES[connector]} <= copied, f"{connector}: packages copied {sorted(copied)}"
    assert PACKAGES[other] not in copied, f"{connector}'s image must not carry {other}"
    assert re.search(r"^COPY setup\.py .*spec\.yaml", text, flags=re.M), (
        "setup.py and the shared spec.yaml are needed by pip install ."
    )
    # The wheel declares both console scripts; the other one's package is not in this image.
    assert re.search(rf"rm \S+/bin/{other}\b", text), f"{connector}: {other}'s console script is not removed"


def _setup_requirements() -> dict[str, Requirement]:
    """install_requires as setup.py lists it now (the installed metadata may predate an edit)."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    lines = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "install_requires"))
    return {canonicalize_name(Requirement(line).name): Requirement(line) for line in lines}


def _source_requirements() -> list[Requirement]:
    lines = SOURCE_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_source_image_installs_its_requirements_pinned_as_setup_py_pins_them():
    text = _dockerfile("source-mistral")
    assert "--no-deps ." in text and "-r requirements.txt" in text
    pinned = _setup_requirements()
    for requirement in _source_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} (requirements.txt) is not a requirement of setup.py"
        assert str(requirement) == str(pinned[name]), f"requirements.txt has {requirement}, setup.py {pinned[name]}"


def test_destination_image_installs_every_requirement_of_the_distribution():
    assert "--no-deps" not in _dockerfile("destination-mistral"), "the destination needs all of setup.py's"


def _third_party_imports(*packages: str) -> set[str]:
    """Top-level modules the packages import anywhere (at module level or inside a function)."""
    found = set()
    for package in packages:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    own = {"__future__", *PACKAGES.values(), "mistral_connection"}
    return {name for name in found if name not in sys.stdlib_module_names and name not in own}


def _installed_with(requirements: list[Requirement]) -> set[str]:
    """The distributions pip installs for these requirements, as this environment resolved them."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        environments = [{"extra": extra} for extra in ("", *requirement.extras)]
        for line in importlib_metadata.distribution(key[0]).requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate(env) for env in environments):
                todo.append(needed)
    return {name for name, _ in seen}


def test_source_image_requirements_provide_every_module_the_source_imports():
    provided = _installed_with(_source_requirements())
    providers = importlib_metadata.packages_distributions()
    missing = {
        module: providers.get(module)
        for module in _third_party_imports("source_mistral", "mistral_connection")
        if not {canonicalize_name(d) for d in providers.get(module, [])} & provided
    }
    assert not missing, f"imported by the source, not installed in its image ({SOURCE_REQUIREMENTS.name}): {missing}"


# ---- docs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("connector", CONNECTORS)
def test_doc_has_airbytes_sections(connector):
    doc = _doc(connector)
    assert doc.startswith("# "), "a doc starts with its title"
    for title in REQUIRED_DOC_SECTIONS:
        _section(doc, title)


@pytest.mark.parametrize("connector", CONNECTORS)
def test_every_spec_property_is_in_the_configuration_reference_with_its_default(connector):
    rows = _reference_rows(_doc(connector))
    spec = _spec(connector)["connectionSpecification"]
    occurrences = list(_property_paths(spec))  # a path can occur once per oneOf variant
    paths = {path for path, _ in occurrences}
    undocumented = sorted(path for path in paths if path not in rows)
    assert not undocumented, f"{connector}: spec properties missing from the configuration reference: {undocumented}"
    stale = sorted(set(rows) - set(paths))
    assert not stale, f"{connector}: the configuration reference documents fields the spec does not have: {stale}"
    for path, prop in occurrences:
        if "default" in prop and not prop.get("const"):
            assert _rendered(prop["default"]) in rows[path], (
                f"{connector}: `{path}` row should show its default {prop['default']!r}"
            )


@pytest.mark.parametrize("connector", CONNECTORS)
def test_required_fields_are_marked_required(connector):
    rows = _reference_rows(_doc(connector))
    for name in _spec(connector)["connectionSpecification"]["required"]:
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        assert cells[2].startswith("yes"), f"{connector}: `{name}` is required by the spec"


@pytest.mark.parametrize("connector", CONNECTORS)
def test_changelog_starts_with_the_metadata_version(connector):
    changelog = _section(_doc(connector), "Changelog")
    versions = re.findall(r"^\|\s*(\d+\.\d+\.\d+)\s*\|", changelog, flags=re.M)
    assert versions and versions[0] == _metadata(connector)["dockerImageTag"], f"latest changelog entry {versions[:1]}"


@pytest.mark.parametrize("connector", CONNECTORS)
def test_changelog_rows_go_from_the_newest_to_the_oldest(connector):
    rows = re.findall(
        r"^\|\s*(\d+\.\d+\.\d+)\s*\|\s*(\d{4}-\d{2}-\d{2})\s*\|", _section(_doc(connector), "Changelog"), flags=re.M
    )
    versions = [tuple(int(part) for part in version.split(".")) for version, _ in rows]
    dates = [date for _, date in rows]
    assert versions == sorted(versions, reverse=True), f"{connector}: changelog versions out of order"
    assert dates == sorted(dates, reverse=True), f"{connector}: changelog dates out of order"


def _source_streams() -> dict[str, dict]:
    manifest = yaml.safe_load((REPO / "source_mistral" / "manifest.yaml").read_text(encoding="utf-8"))
    streams = {}
    for ref in manifest["streams"]:
        definition = manifest["definitions"][ref["$ref"].rsplit("/", 1)[-1]]
        cursor = (definition.get("incremental_sync") or {}).get("cursor_field")
        schema = manifest["schemas"][definition["schema_loader"]["schema"]["$ref"].rsplit("/", 1)[-1]]
        streams[definition["name"]] = {"cursor": cursor, "primary_key": definition.get("primary_key"), "schema": schema}
    return streams


def test_source_doc_lists_every_stream_with_its_sync_modes_and_cursor():
    table = _section(_doc("source-mistral"), "Supported streams")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\|\s*`([a-z_]+)`\s*\|.*$", table, flags=re.M)}
    streams = _source_streams()
    assert set(rows) == set(streams), f"documented {sorted(rows)}, manifest has {sorted(streams)}"
    for name, stream in streams.items():
        row = rows[name]
        if stream["cursor"]:
            assert "Incremental" in row and f"`{stream['cursor']}`" in row, f"{name}: incremental on {stream['cursor']}"
        else:
            assert "Incremental" not in row, f"{name} has no cursor: full refresh only"
        key = stream["primary_key"]
        for part in [key] if isinstance(key, str) else key or []:
            assert f"`{part}`" in row, f"{name}: primary key {part} not documented"


def test_source_doc_output_columns_exist_in_the_stream_schemas():
    table = _section(_doc("source-mistral"), "Output schema")
    streams = _source_streams()
    for match in re.finditer(r"^\|\s*`([a-z_]+)`\s*\|(.*)$", table, flags=re.M):
        name, columns = match.group(1), re.findall(r"`([a-z_]+)`", match.group(2))
        assert name in streams, f"unknown stream {name}"
        unknown = sorted(set(columns) - set(streams[name]["schema"]["properties"]))
        assert not unknown, f"{name}: documented columns not in its schema: {unknown}"


def test_destination_doc_lists_the_declared_sync_modes_and_output_columns():
    doc = _doc("destination-mistral")
    modes = _section(doc, "Supported sync modes")
    for mode in _spec("destination-mistral")["supported_destination_sync_modes"]:
        assert f"`{mode}`" in modes, f"destination sync mode {mode} not documented"
    from destination_mistral.sinks import schema

    columns = _section(doc, "Output columns")
    names = [
        value
        for name, value in vars(schema).items()
        if name.isupper() and isinstance(value, str) and value.startswith(schema.RESERVED_PREFIXES)
    ]
    assert len(names) >= 9, (
        f"expected the metadata and enrichment column names in destination_mistral.sinks.schema: {names}"
    )
    for name in names:
        assert f"`{name}`" in columns, f"output column {name} not documented"


@pytest.mark.parametrize("connector", CONNECTORS)
def test_docs_point_at_the_pyairbyte_example_that_exists(connector):
    doc = _doc(connector)
    assert "examples/pyairbyte_sync.py" in doc
    assert (REPO / "examples" / "pyairbyte_sync.py").is_file()


def test_pyairbyte_example_sets_offline_mode_before_importing_pyairbyte_and_the_readme_says_why():
    tree = ast.parse((REPO / "examples" / "pyairbyte_sync.py").read_text(encoding="utf-8"))
    offline = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and ast.unparse(node.targets[0]) == "os.environ['AIRBYTE_OFFLINE_MODE']"
        and ast.unparse(node.value) == "'1'"
    ]
    imports = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Import) and any(alias.name == "airbyte" for alias in node.names)
    ]
    assert offline and imports and max(offline) < min(imports), "PyAirbyte reads AIRBYTE_OFFLINE_MODE when imported"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^### Under PyAirbyte$(.*?)(?=^##)", readme, flags=re.M | re.S)
    assert section and "AIRBYTE_OFFLINE_MODE=1" in section.group(1), "the README's PyAirbyte section says why"
