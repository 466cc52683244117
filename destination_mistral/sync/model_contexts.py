"""The context sizes of a sync's chat models that the names' table does not list, as the API lists
them (`max_context_length` of GET /v1/models/{id}), learnt once when the sync starts.

A prompt is cut to what the model's context leaves besides the answer. A model the table
(settings.chat_context_tokens) does not list would get 131,072 tokens: taken too large (voxtral-small
has 32,768), it lets through prompts the API refuses, each an error row where truncation was asked.
A listed model is not asked for: a sync answered from the cache makes no request at all."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import ApiError
from destination_mistral.settings.enrichment import listed_chat_context

logger = logging.getLogger("airbyte")


async def model_contexts(models: Iterable[str], client: MistralClient) -> dict[str, int]:
    """Each model's context in tokens, for the models the API answers for. A model the API does not
    describe, or an API that cannot answer now (a wrong key, a service that is down), keeps the
    table's size: the sync goes on, and its requests meet the same answer with their own retries
    and errors."""
    contexts: dict[str, int] = {}
    for model in sorted({model for model in models if listed_chat_context(model) is None}):
        try:
            card = await client.get(f"models/{model}")
        except Exception as error:
            # A refusal, or an error the client made for the sync (a traced error, whatever its kind:
            # the CDK's class is not imported by a sync that makes none). The sync's own requests
            # then meet it, and say it as they do (a model the API does not know: "Did you mean").
            if not isinstance(error, ApiError) and not hasattr(error, "failure_type"):
                raise
            reason = getattr(error, "status", None) or getattr(
                getattr(error, "failure_type", None), "value", "an error"
            )
            logger.info(f"model {model}: GET /v1/models answered no context size ({reason}); the table's is used")
            continue
        size = card.get("max_context_length") if isinstance(card, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            contexts[model] = size
            logger.info(f"model {model}: a context of {size} tokens (GET /v1/models)")
    return contexts
