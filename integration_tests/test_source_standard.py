"""Airbyte's standard source tests, driven by the root acceptance-test-config.yml, against the
bundled emulator."""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from airbyte_cdk.test.models import ConnectorTestScenario
from airbyte_cdk.test.standard_tests import SourceTestSuiteBase

from mistral_emulator.server import EmulatorServer
from source_mistral.source import SourceMistral

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_BASE_URL = "http://127.0.0.1:8089"

_emulator: EmulatorServer | None = None


def _live_emulator() -> EmulatorServer:
    """One emulator per test process. Scenarios are collected before fixtures exist, so it is
    started on first use and stopped when the process exits."""
    global _emulator
    if _emulator is None:
        _emulator = EmulatorServer(api_key="emulator-key")
        _emulator.__enter__()
        atexit.register(_emulator.__exit__, None, None, None)
    return _emulator


def _point_at_emulator(config: dict[str, Any]) -> dict[str, Any]:
    base_url = str(config.get("base_url", ""))
    if base_url.startswith(DOCUMENTED_BASE_URL):
        config = {**config, "base_url": _live_emulator().base_url + base_url[len(DOCUMENTED_BASE_URL):]}
    return config


class TestSourceMistralStandard(SourceTestSuiteBase):
    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return REPO_ROOT

    @classmethod
    def get_scenarios(cls) -> list[ConnectorTestScenario]:
        scenarios = super().get_scenarios()
        return [
            scenario.model_copy(
                update={"config_dict": _point_at_emulator(scenario.get_config_dict(connector_root=REPO_ROOT, empty_if_missing=True))}
            )
            for scenario in scenarios
        ]

    @classmethod
    def create_connector(cls, scenario: ConnectorTestScenario | None) -> SourceMistral:
        config = scenario.get_config_dict(connector_root=REPO_ROOT, empty_if_missing=True) if scenario else None
        return SourceMistral(config=config or None)
