"""Every enricher the runner can hand the pipeline offers what the pipeline calls, and chat answers
read through `parse` as the Batch API reads them: one result per input."""

import asyncio

import pytest

from destination_mistral.enrich.base import Enricher
from destination_mistral.enrich.batch_api import AutoDeliveryEnricher, BatchApiEnricher
from destination_mistral.enrich.chat import ChatEnricher
from destination_mistral.enrich.embeddings import EmbeddingEnricher
from destination_mistral.settings import ChatSettings, EmbeddingSettings

ANSWER = {
    "model": "mistral-small-latest",
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Fine."}, "finish_reason": "stop"}],
}


def chat():
    return ChatEnricher(ChatSettings(model="mistral-small-latest", prompt_template="{{ review }}"), None)


def embeddings():
    return EmbeddingEnricher(EmbeddingSettings(fields=(("text",),), output_dimension=2), None)


@pytest.mark.parametrize(
    "make",
    [
        chat,
        embeddings,
        lambda: BatchApiEnricher(chat(), None),
        lambda: AutoDeliveryEnricher(embeddings(), BatchApiEnricher(embeddings(), None), threshold=1),
    ],
    ids=["chat", "embeddings", "batch", "auto"],
)
def test_each_enricher_offers_what_the_pipeline_calls(make):
    enricher = make()
    assert isinstance(enricher, Enricher)
    for name in ("prepare", "count_tokens", "submit", "flush", "parse"):
        assert callable(getattr(enricher, name)), name


def test_chat_parse_gives_the_one_input_its_result():
    enricher = chat()
    item = enricher.prepare({"review": "ok"})
    (result,) = enricher.parse(ANSWER, [item])
    assert result.value == "Fine." and result.prompt_tokens == 3
    assert BatchApiEnricher(enricher, None).parse(ANSWER, [item])[0].value == "Fine."


def test_chat_submit_is_a_task_and_flush_sends_nothing():
    class Client:
        async def post(self, path, body, cost=0, validate=None, **_):
            return validate(ANSWER)

    async def main():
        enricher = ChatEnricher(ChatSettings(model="mistral-small-latest", prompt_template="{{ review }}"), Client())
        future = enricher.submit(enricher.prepare({"review": "ok"}))
        enricher.flush()
        return await future

    assert asyncio.run(main()).value == "Fine."
