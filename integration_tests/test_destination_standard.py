"""Airbyte's standard destination tests (spec and check), against the bundled emulator.

The root acceptance-test-config.yml holds the source's scenarios under `acceptance_tests` and the
destination's under `destination_acceptance_tests`, in the same shape, so that each suite reads
its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from airbyte_cdk.test.models import ConnectorTestScenario
from airbyte_cdk.test.standard_tests import DestinationTestSuiteBase
from boltons.typeutils import classproperty

from destination_mistral.destination import DestinationMistral
from integration_tests.emulator_scenarios import REPO_ROOT, scenarios_against_emulator

SECTION = "destination_acceptance_tests"


class TestDestinationMistralStandard(DestinationTestSuiteBase):
    connector = DestinationMistral

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return REPO_ROOT

    @classproperty
    def acceptance_test_config(cls) -> Any:
        whole = yaml.safe_load((REPO_ROOT / "acceptance-test-config.yml").read_text())
        return {"test_strictness_level": whole.get("test_strictness_level", "low"), "acceptance_tests": whole[SECTION]}

    @classmethod
    def get_scenarios(cls) -> list[ConnectorTestScenario]:
        return scenarios_against_emulator(super().get_scenarios())

    @classmethod
    def create_connector(cls, scenario: ConnectorTestScenario | None) -> DestinationMistral:
        return DestinationMistral()
