"""Standard-test scenarios run against the bundled emulator. The configs in integration_tests/configs
name the emulator's documented address (`mistral-emulator --port 8089 --api-key emulator-key`), so
they work by hand too; the suites swap in the emulator they start for the run."""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from airbyte_cdk.test.models import ConnectorTestScenario

from mistral_emulator import EmulatorServer

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_BASE_URL = "http://127.0.0.1:8089"

_emulator: EmulatorServer | None = None


def live_emulator() -> EmulatorServer:
    """Scenarios are collected before fixtures exist: one emulator per test process, started on
    first use and stopped at exit."""
    global _emulator
    if _emulator is None:
        _emulator = EmulatorServer(api_key="emulator-key")
        _emulator.__enter__()
        atexit.register(_emulator.__exit__, None, None, None)
    return _emulator


def point_at_emulator(config: dict[str, Any]) -> dict[str, Any]:
    base_url = str(config.get("base_url", ""))
    if base_url.startswith(DOCUMENTED_BASE_URL):
        config = {**config, "base_url": live_emulator().base_url + base_url[len(DOCUMENTED_BASE_URL) :]}
    if isinstance(config.get("output"), dict):
        output = dict(config["output"])
        for key in ("path", "directory"):
            if key in output and not Path(output[key]).is_absolute():
                output[key] = str(REPO_ROOT / output[key])
        config = {**config, "output": output}
    return config


def scenarios_against_emulator(scenarios: list[ConnectorTestScenario]) -> list[ConnectorTestScenario]:
    return [
        scenario.model_copy(
            update={
                "config_dict": point_at_emulator(
                    scenario.get_config_dict(connector_root=REPO_ROOT, empty_if_missing=True)
                )
            }
        )
        for scenario in scenarios
    ]
