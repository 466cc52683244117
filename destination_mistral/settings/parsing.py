"""The one way a config becomes settings, used by `check` and `write` alike so that they accept
and refuse the same configs with the same words: the credential block first (mistral_connection,
shared with the source), then the destination's own fields against the spec (and none it lacks),
then the rules the spec cannot state, then the typed settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from destination_mistral.settings.conversion import build_config
from destination_mistral.settings.key_masking import key_kept_out
from destination_mistral.settings.rules import check_rules
from destination_mistral.settings.spec_fields import own_schema
from destination_mistral.settings.typed import DestinationConfig
from destination_mistral.settings.validation import schema_problem
from mistral_connection import MistralConnection
from mistral_connection.errors import config_error
from mistral_connection.unknown_fields import unknown_field_problem


def parse_config(config: Mapping[str, Any]) -> DestinationConfig:
    """Raises a config error naming the first field to fix; the API key is never in its text."""
    # The credential block accepts more forms than the spec's schema spells out (a base URL with
    # /v1 or an endpoint path, a placement without a parameter name), with a message for each
    # mistake that never echoes the key: it is normalised, not validated against the schema.
    connection = MistralConnection.from_config(config)
    own = without_nulls(config)
    with key_kept_out(connection.api_key, *output_secrets(own)):
        problem = unknown_field_problem(own, own_schema()["properties"]) or schema_problem(own)
        if problem:
            raise config_error(problem)
        check_rules(own)
    return build_config(own, connection)


def output_secrets(config: Mapping[str, Any]) -> list[str]:
    """The output's secret fields as the config gives them, whether or not they are valid yet."""
    output = config.get("output")
    if not isinstance(output, Mapping):
        return []
    return [value for value in (output.get("password"), output.get("motherduck_token")) if isinstance(value, str)]


def without_nulls(value: Any) -> Any:
    """The config with every null field left out: a form or a generated config writes null for a
    field left empty, which means its default, not a value of the wrong type."""
    if isinstance(value, Mapping):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value
