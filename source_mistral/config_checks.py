"""The source's own fields checked against its spec before anything is built from them.

The concurrent CDK builds its workers, its call budget and its cursors from the config when the
source is constructed, before the entrypoint validates the config: a value out of the spec's range
(num_workers 0) or a date the calendar does not hold (2025-02-30) then crashes with a traceback
instead of a config error. And the CDK's own validation message ("0 is less than the minimum of
1") does not say which field to fix. So the config is validated here first, against the same spec
the platform shows, with one sentence per field.

The credential block (api_key, model, base_url, key_placement) is left to
mistral_connection.normalize_config, which accepts more forms than the spec's schema spells out
(a base URL with /v1 or an endpoint path, a placement without a parameter name) and has a message
for each mistake; its messages never echo the key."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jsonschema

from mistral_connection import config_error
from mistral_connection.spec import credential_block

START_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
START_DATE_SHAPE = "YYYY-MM-DDTHH:MM:SSZ (UTC), e.g. 2025-01-01T00:00:00Z"


def check_own_fields(config: Mapping[str, Any], connection_specification: Mapping[str, Any]) -> None:
    """Raises a config error naming the first field (in the form's order) whose value the spec
    refuses, or whose date does not exist."""
    properties = connection_specification.get("properties", {})
    credentials = set(credential_block().get("properties", {}))
    validator = jsonschema.Draft7Validator(connection_specification)
    problems: dict[str, jsonschema.ValidationError] = {}
    for error in validator.iter_errors(dict(config)):
        field = str(error.absolute_path[0]) if error.absolute_path else None
        if field is None or field in credentials or field not in properties:
            continue
        problems.setdefault(field, error)
    for field in sorted(problems, key=lambda name: properties[name].get("order", 0)):
        raise config_error(_message(field, properties[field], problems[field]))
    start_date = config.get("start_date")
    if isinstance(start_date, str) and start_date:
        try:
            datetime.strptime(start_date, START_DATE_FORMAT)
        except ValueError:
            raise config_error(
                f"`start_date` {start_date!r} is not a date that exists (month 01–12, a day the month has, "
                f"hours 00–23): write it as {START_DATE_SHAPE}."
            ) from None


def _message(field: str, schema: Mapping[str, Any], error: jsonschema.ValidationError) -> str:
    if field == "start_date":
        return f"`start_date` must be a UTC time written as {START_DATE_SHAPE}."
    if schema.get("type") == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        span = f" from {low} to {high}" if low is not None and high is not None else ""
        got = error.instance
        shown = f"; {got!r} is not" if isinstance(got, (int, float)) and not isinstance(got, bool) else ""
        default = f" Leave it out for the default ({schema['default']})." if "default" in schema else ""
        return f"`{field}` must be a whole number{span}{shown}.{default}"
    return f"`{field}` is not valid: {schema.get('description') or schema.get('title') or 'see the form'}"
