"""Fixtures that start the Mistral emulator on a free loopback port. Generic on purpose: source,
destination and emulator tests all use them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mistral_emulator import EmulatorServer, EmulatorSettings  # noqa: E402

EMULATOR_API_KEY = "test-key"

# Sizes chosen so that every paginated list has several pages at the default page_size of 100
# (and agents several at their default of 20).
SEEDED_SIZES = dict(files=250, batch_jobs=120, agents=45, fine_tuning_jobs=30)


@pytest.fixture(scope="session")
def emulator_api_key() -> str:
    return EMULATOR_API_KEY


@pytest.fixture(scope="session")
def emulator_settings() -> EmulatorSettings:
    """Settings of the shared emulator; copy before changing (see `fresh_emulator`)."""
    return EmulatorSettings(seed=7, **SEEDED_SIZES)


@pytest.fixture(scope="session")
def emulator(emulator_api_key: str, emulator_settings: EmulatorSettings) -> Iterator[EmulatorServer]:
    """One emulator for the whole session. Do not change its knobs: use `fresh_emulator` for that."""
    with EmulatorServer(api_key=emulator_api_key, settings=emulator_settings.copy()) as server:
        yield server


@pytest.fixture
def fresh_emulator(emulator_api_key: str, emulator_settings: EmulatorSettings) -> Iterator[EmulatorServer]:
    """A new emulator per test, for tests that change knobs, create data or need exact counts."""
    with EmulatorServer(api_key=emulator_api_key, settings=emulator_settings.copy()) as server:
        yield server


@pytest.fixture
def emulator_base_url(emulator: EmulatorServer) -> str:
    return emulator.base_url


@pytest.fixture
def emulator_auth_headers(emulator_api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator_api_key}"}
