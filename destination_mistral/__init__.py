"""destination-mistral: enriches records through Mistral chat completions or embeddings and writes
them to DuckDB or JSON Lines."""

from __future__ import annotations

from typing import Any

__all__ = ["DestinationMistral"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the class brings in the Airbyte CDK, which `write` does without.
    if name == "DestinationMistral":
        from destination_mistral.destination import DestinationMistral

        return DestinationMistral
    raise AttributeError(name)
