"""Both connectors' specs are the one credential block plus their own fields, never a copy."""

import jsonschema
import pytest
import yaml

from mistral_connection.spec import connection_specification, credential_block
from source_mistral.source import source_specification

CREDENTIAL_FIELDS = ["api_key", "model", "base_url", "key_placement"]


def test_source_spec_starts_with_the_shared_credential_block():
    spec = source_specification().connectionSpecification
    assert list(spec["properties"])[: len(CREDENTIAL_FIELDS)] == CREDENTIAL_FIELDS
    for name in CREDENTIAL_FIELDS:
        assert spec["properties"][name] == credential_block()["properties"][name], f"{name} differs from spec.yaml"
    assert spec["required"][0] == "api_key"
    assert spec["properties"]["api_key"]["airbyte_secret"] is True


def test_own_fields_are_ordered_after_the_credentials_without_clashing_orders():
    spec = source_specification().connectionSpecification
    orders = [p["order"] for p in spec["properties"].values()]
    assert len(orders) == len(set(orders)), f"duplicate order values: {orders}"
    credential_orders = [spec["properties"][n]["order"] for n in CREDENTIAL_FIELDS]
    assert max(credential_orders) < min(
        o for n, p in spec["properties"].items() if n not in CREDENTIAL_FIELDS for o in [p["order"]]
    )


def test_a_connector_field_cannot_shadow_a_credential_field():
    with pytest.raises(ValueError, match="api_key"):
        connection_specification("x", {"properties": {"api_key": {"type": "string"}}})


def test_every_property_has_a_title_or_description_and_a_group():
    spec = source_specification().connectionSpecification
    groups = {g["id"] for g in spec["groups"]}
    for name, prop in spec["properties"].items():
        assert prop.get("title") or prop.get("description"), f"{name} needs a title"
        assert prop.get("group") in groups, f"{name} belongs to no declared group"


@pytest.mark.parametrize(
    "config, valid",
    [
        ({"api_key": "k"}, True),
        ({"api_key": "k", "key_placement": {"method": "query_parameter", "parameter_name": "api_token"}}, True),
        ({"api_key": "k", "key_placement": {"method": "bearer_header"}}, True),
        ({"api_key": "k", "key_placement": {"method": "query_parameter", "parameter_name": "bad name"}}, False),
        ({"model": "mistral-small-latest"}, False),
        ({"api_key": "k", "page_size": 0}, False),
    ],
)
def test_spec_accepts_valid_configs_and_rejects_invalid_ones(config, valid):
    spec = source_specification().connectionSpecification
    validator = jsonschema.Draft7Validator(spec)
    assert validator.is_valid(config) is valid, list(validator.iter_errors(config))


def test_spec_yaml_is_the_single_source_of_the_credential_block(tmp_path):
    import pathlib

    top = pathlib.Path(__file__).resolve().parents[1] / "spec.yaml"
    assert yaml.safe_load(top.read_text()) == dict(credential_block())
