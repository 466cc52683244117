"""What moderation and classification share: a record read as one text (its fields or template) or
as a conversation (`conversation_field`, sent to the chat route), inputs batched like embeddings
(batched_requests.py), and an answer's `results` matched to the inputs one for one. Each mode says
how one result is read (moderation.py, classification.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from destination_mistral.enrich.batched_requests import BatchedEnricher
from destination_mistral.enrich.conversations import conversation_at, conversation_text
from destination_mistral.enrich.embedding_answers import prompt_tokens
from destination_mistral.enrich.embedding_input import EmbeddingInput
from destination_mistral.enrich.record_text import RecordText
from destination_mistral.enrich.results import Result, cache_key
from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import InvalidAnswer
from destination_mistral.settings import ClassifierSettings


class ClassifierInput(EmbeddingInput):
    """One record's text, or its conversation (whose text is what its tokens are counted on)."""

    __slots__ = ("conversation",)

    def __init__(
        self,
        key: str,
        text: str,
        tokens: int | None,
        count,
        conversation: list | None = None,
        cut: bool = False,
    ) -> None:
        super().__init__(key, text, tokens, count, cut)
        self.conversation = conversation


class ClassifierEnricher(BatchedEnricher[ClassifierInput]):
    dimension: int | None = None  # no vector column to size

    def __init__(self, settings: ClassifierSettings, client: MistralClient | None) -> None:
        text = RecordText(
            settings.model,
            settings.fields,
            settings.template,
            settings.max_input_tokens,
            settings.input_too_long,
            what="the text to classify",
        )
        super().__init__(client, settings.endpoint, text)
        self.settings = settings
        self.kind = settings.mode
        self.model = settings.model

    def prepare(self, record: Mapping[str, Any]) -> ClassifierInput:
        path = self.settings.conversation_field
        if path is None:
            held = self._text.of(record)
            text, payload, conversation = held.text, held.text, None
        else:
            conversation = conversation_at(record, path)
            text = conversation_text(conversation)
            held = self._text.within_limit(text, "the conversation", may_cut=False)
            payload = conversation
        key = cache_key(self.endpoint, self.model, {}, payload)
        return ClassifierInput(key, text, held.tokens, self.count_text, conversation, held.cut)

    def request_body(self, items: list[ClassifierInput]) -> dict[str, Any]:
        if self.settings.conversation_field is None:
            inputs: list[Any] = [item.text for item in items]
        elif self.kind == "moderation":
            inputs = [item.conversation for item in items]
        else:  # chat/classifications takes InstructRequest objects
            inputs = [{"messages": item.conversation} for item in items]
        return {"model": self.model, "input": inputs}

    def parse(self, response: Any, items: Sequence[ClassifierInput]) -> list[Result]:
        """One result per input, in input order. The answer's `results` follow the inputs; one of
        another length or shape cannot be matched to them, and is the service's failure."""
        if not isinstance(response, Mapping):
            raise InvalidAnswer(f"a {self.kind} answer that is not a JSON object")
        results = response.get("results")
        if not isinstance(results, list) or len(results) != len(items):
            count = len(results) if isinstance(results, list) else "no"
            raise InvalidAnswer(f"a {self.kind} answer with {count} results for {len(items)} inputs")
        values = [self.read_result(result) for result in results]
        model = response.get("model") if isinstance(response.get("model"), str) else self.model
        total = prompt_tokens(response)
        self._calibrate(total, list(items))
        ours = sum(item.tokens for item in items) or 1
        # The routes report no usage today: each record's tokens are then our count of its input.
        return [
            Result(
                value=value,
                model=model,
                prompt_tokens=round(total * item.tokens / ours) if total is not None else item.tokens,
                completion_tokens=0,
            )
            for item, value in zip(items, values, strict=True)
        ]

    def read_result(self, result: Any) -> Any:
        """The stored value of one result; raises InvalidAnswer for one of the wrong shape."""
        raise NotImplementedError


def scores_of(value: Any, what: str) -> dict[str, float]:
    """A `{name: score}` mapping of an answer, its scores as floats. Raises InvalidAnswer."""
    if not isinstance(value, Mapping) or not value:
        raise InvalidAnswer(f"{what} without scores")
    scores = {}
    for name, score in value.items():
        if not isinstance(score, (int, float)) or isinstance(score, bool) or score != score:
            raise InvalidAnswer(f"{what} with a score that is not a number")
        scores[str(name)] = float(score)
    return scores
