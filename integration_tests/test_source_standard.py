"""Airbyte's standard source tests, driven by the `acceptance_tests` section of the root
acceptance-test-config.yml, against the bundled emulator."""

from __future__ import annotations

from pathlib import Path

from airbyte_cdk.test.models import ConnectorTestScenario
from airbyte_cdk.test.standard_tests import SourceTestSuiteBase

from integration_tests.emulator_scenarios import REPO_ROOT, scenarios_against_emulator
from source_mistral.source import SourceMistral


class TestSourceMistralStandard(SourceTestSuiteBase):
    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return REPO_ROOT

    @classmethod
    def get_scenarios(cls) -> list[ConnectorTestScenario]:
        return scenarios_against_emulator(super().get_scenarios())

    @classmethod
    def create_connector(cls, scenario: ConnectorTestScenario | None) -> SourceMistral:
        # The concurrent CDK wants the config at construction.
        config = scenario.get_config_dict(connector_root=REPO_ROOT, empty_if_missing=True) if scenario else None
        return SourceMistral(config=config or None)
