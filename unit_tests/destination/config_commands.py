"""`check` and `write` run on a config as the platform runs them, for the tests of what they say
about configs. No API is reached: `check`'s model lookup answers that every model exists."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from airbyte_cdk.models import FailureType, Status, Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

import destination_mistral.destination as destination_module
from destination_mistral.destination import DestinationMistral
from tests.support.builders import catalog, configured_stream


@pytest.fixture
def offline_api(monkeypatch):
    async def every_model_exists(settings):
        return None

    monkeypatch.setattr(destination_module, "_check_api", every_model_exists)


def check_messages(config: Mapping[str, Any], tmp_path: Path) -> list:
    """Every message of `destination-mistral check`, which must hold one connection status."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    destination = DestinationMistral()
    messages = list(destination.run_cmd(destination.parse_args(["check", "--config", str(path)])))
    assert len([m for m in messages if m.type == Type.CONNECTION_STATUS]) == 1, messages
    return messages


def run_check(config: Mapping[str, Any], tmp_path: Path) -> str | None:
    """The message of a FAILED status, or None when `check` succeeds."""
    status = next(m.connectionStatus for m in check_messages(config, tmp_path) if m.type == Type.CONNECTION_STATUS)
    return None if status.status == Status.SUCCEEDED else status.message


def write_error(config: Mapping[str, Any], streams=(), messages=()) -> AirbyteTracedException | None:
    """The config error `write` ends with (any other failure fails the test), or None."""
    try:
        list(
            DestinationMistral().write(
                config, catalog(*streams) if streams else catalog(configured_stream()), list(messages)
            )
        )
    except AirbyteTracedException as error:
        assert error.failure_type == FailureType.config_error, error.message
        return error
    return None
