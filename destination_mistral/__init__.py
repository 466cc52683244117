"""destination-mistral: enriches records through Mistral chat completions or embeddings and writes
them to DuckDB or JSON Lines."""

from destination_mistral.destination import DestinationMistral

__all__ = ["DestinationMistral"]
