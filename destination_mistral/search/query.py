"""The query embedded as the stream's records were: the same model, output_dimension, token limit and
truncation rule, sent as one request through the destination's HTTP client (its pacing, retries,
base_url and key placement)."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from destination_mistral.enrich.embeddings import KNOWN_DIMENSIONS, EmbeddingEnricher
from destination_mistral.enrich.templates import RecordError
from destination_mistral.http.client import MistralClient
from destination_mistral.settings import DestinationConfig, EmbeddingSettings
from mistral_connection.errors import config_error

QUERY_FIELD = "query"


def embedding_settings(config: DestinationConfig, stream: str) -> EmbeddingSettings:
    """The stream's enrichment (its override, else the default), which must be embeddings: a query
    is only comparable with vectors of the same model and dimension."""
    enrichment = config.enrichment_for(stream)
    if not isinstance(enrichment, EmbeddingSettings):
        raise config_error(
            f"Stream {stream!r} is enriched with mode {enrichment.mode!r} (`{config.enrichment_location(stream)}`), "
            "not embeddings: search compares embeddings, so it needs a stream whose enrichment is "
            '`{"mode": "embeddings"}`.'
        )
    return enrichment


def query_dimension(settings: EmbeddingSettings) -> int | None:
    """The query's vector size as the settings give it, before it is embedded (None: the model's
    size is not known until its first answer)."""
    return settings.output_dimension or KNOWN_DIMENSIONS.get(settings.model)


def embed_query(config: DestinationConfig, settings: EmbeddingSettings, text: str) -> np.ndarray:
    return asyncio.run(_embed(config, settings, text))


async def _embed(config: DestinationConfig, settings: EmbeddingSettings, text: str) -> np.ndarray:
    # The query stands for a record whose only embedded field is the query: the enricher then applies
    # the stream's token limit and `input_too_long` to it exactly as to a record's text.
    as_record = dataclasses.replace(settings, fields=((QUERY_FIELD,),), template=None)
    async with MistralClient(config.connection, config.limits) as client:
        enricher = EmbeddingEnricher(as_record, client)
        try:
            item = enricher.prepare({QUERY_FIELD: text})
        except RecordError as error:
            raise config_error(f"The query cannot be embedded: {error}.") from None
        answer = enricher.submit(item)
        enricher.flush()  # one input: sent now rather than after the batcher's linger
        result = await answer
    if not result.ok:
        raise config_error(f"The Mistral API refused to embed the query: {result.error}")
    return np.asarray(result.value, dtype=np.float32)
