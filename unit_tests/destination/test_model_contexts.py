"""A sync learns the context of a chat model the names' table does not list from the API, and goes on
with the table's size when the API cannot tell."""

from __future__ import annotations

import asyncio

import pytest

from destination_mistral.http.errors import ApiError
from destination_mistral.sync.model_contexts import model_contexts


class Cards:
    def __init__(self, cards):
        self.cards, self.asked = cards, []

    async def get(self, path):
        self.asked.append(path)
        card = self.cards[path.removeprefix("models/")]
        if isinstance(card, Exception):
            raise card
        return card


def test_only_models_the_table_does_not_list_are_asked_for_and_a_refusal_keeps_the_tables_size():
    client = Cards(
        {
            "voxtral-small-latest": {"id": "voxtral-small-2507", "max_context_length": 32_768},
            "my-chat-model": ApiError("HTTP 404: model not found", status=404),
            "odd-card": {"max_context_length": "large"},
        }
    )
    models = ["mistral-small-latest", "voxtral-small-latest", "my-chat-model", "odd-card", "voxtral-small-latest"]
    assert asyncio.run(model_contexts(models, client)) == {"voxtral-small-latest": 32_768}
    assert sorted(client.asked) == ["models/my-chat-model", "models/odd-card", "models/voxtral-small-latest"]


class _Traced(Exception):
    def __init__(self, failure):
        super().__init__(failure)
        self.failure_type = type("FailureType", (), {"value": failure})()


def test_an_api_that_cannot_answer_keeps_the_tables_size_and_only_a_bug_stops_the_sync():
    for failure in ("transient_error", "config_error"):  # a service that is down; a wrong key or an unknown model
        client = Cards({"voxtral-small-latest": _Traced(failure)})
        assert asyncio.run(model_contexts(["voxtral-small-latest"], client)) == {}, failure
    with pytest.raises(TypeError):
        asyncio.run(model_contexts(["voxtral-small-latest"], Cards({"voxtral-small-latest": TypeError("a bug")})))
