"""Airbyte's standard destination tests (spec and check), against the bundled emulator.

The root acceptance-test-config.yml holds the source's scenarios under `acceptance_tests`; the
destination's live under `destination_acceptance_tests`, same shape, so that each suite reads its own.
Until that section exists, the scenarios below are used."""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

import yaml
from boltons.typeutils import classproperty

from airbyte_cdk.test.models import ConnectorTestScenario
from airbyte_cdk.test.standard_tests import DestinationTestSuiteBase

from destination_mistral.destination import DestinationMistral
from mistral_emulator.server import EmulatorServer

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_BASE_URL = "http://127.0.0.1:8089"
SECTION = "destination_acceptance_tests"

DEFAULT_SCENARIOS = {
    "spec": {"tests": [{"config_path": "integration_tests/configs/destination_chat.json"},
                       {"config_path": "integration_tests/configs/destination_embeddings.json"},
                       {"config_path": "integration_tests/configs/destination_jsonl.json"}]},
    "connection": {"tests": [
        {"config_path": "integration_tests/configs/destination_chat.json", "status": "succeed"},
        {"config_path": "integration_tests/configs/destination_embeddings.json", "status": "succeed"},
        {"config_path": "integration_tests/configs/destination_jsonl.json", "status": "succeed"},
        {"config_path": "integration_tests/configs/destination_invalid_key.json", "status": "failed"},
        {"config_path": "integration_tests/configs/destination_wrong_capability.json", "status": "failed"},
    ]},
}

_emulator: EmulatorServer | None = None


def _live_emulator() -> EmulatorServer:
    """Scenarios are collected before fixtures exist: one emulator per test process, started on
    first use and stopped at exit."""
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
    output = dict(config.get("output") or {})
    for key in ("path", "directory"):
        if key in output and not Path(output[key]).is_absolute():
            output[key] = str(REPO_ROOT / output[key])
    return {**config, "output": output}


class TestDestinationMistralStandard(DestinationTestSuiteBase):
    connector = DestinationMistral

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return REPO_ROOT

    @classproperty
    def acceptance_test_config(cls) -> Any:
        path = REPO_ROOT / "acceptance-test-config.yml"
        whole = yaml.safe_load(path.read_text()) if path.exists() else {}
        return {
            "test_strictness_level": whole.get("test_strictness_level", "low"),
            "acceptance_tests": whole.get(SECTION) or DEFAULT_SCENARIOS,
        }

    @classmethod
    def get_scenarios(cls) -> list[ConnectorTestScenario]:
        return [
            scenario.model_copy(update={"config_dict": _point_at_emulator(
                scenario.get_config_dict(connector_root=REPO_ROOT, empty_if_missing=True))})
            for scenario in super().get_scenarios()
        ]

    @classmethod
    def create_connector(cls, scenario: ConnectorTestScenario | None) -> DestinationMistral:
        return DestinationMistral()
