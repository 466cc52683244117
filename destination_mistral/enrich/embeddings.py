"""Embeddings: the vector of each record's text.

The text is read by record_text.py, batches are formed, sent and split by batched_requests.py (under
the limits of embedding_limits.py, holding inputs while the first answer is awaited in held_inputs.py),
and the vectors are read back in embedding_answers.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from destination_mistral.enrich.batched_requests import BatchedEnricher
from destination_mistral.enrich.embedding_answers import decode_vector, prompt_tokens, read_vectors, results_of
from destination_mistral.enrich.embedding_input import EmbeddingInput
from destination_mistral.enrich.record_text import RecordText
from destination_mistral.enrich.results import Result, cache_key
from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import ApiError
from destination_mistral.settings import EmbeddingSettings

__all__ = ["KNOWN_DIMENSIONS", "EmbeddingEnricher", "EmbeddingInput", "decode_vector"]

# Native sizes, so that a table's FLOAT[n] column can be created before the first vector arrives.
KNOWN_DIMENSIONS = {
    "mistral-embed": 1024,
    "mistral-embed-2312": 1024,
    "codestral-embed": 1536,
    "codestral-embed-2505": 1536,
}


class EmbeddingEnricher(BatchedEnricher[EmbeddingInput]):
    kind = "embeddings"

    def __init__(self, settings: EmbeddingSettings, client: MistralClient | None) -> None:
        text = RecordText(
            settings.model, settings.fields, settings.template, settings.max_input_tokens, settings.input_too_long
        )
        super().__init__(client, "embeddings", text)
        self.settings = settings
        self.model = settings.model
        self._params = {"output_dimension": settings.output_dimension} if settings.output_dimension else {}
        self._base64 = True
        # The vector size every answer must have: known for the model, else the first one seen.
        self._dimension = self.dimension

    @property
    def dimension(self) -> int | None:
        return self.settings.output_dimension or KNOWN_DIMENSIONS.get(self.model)

    def prepare(self, record: Mapping[str, Any]) -> EmbeddingInput:
        held = self._text.of(record)
        return self.input_for(held.text, held.tokens, cut=held.cut)

    def input_for(self, text: str, tokens: int | None, cut: bool = False) -> EmbeddingInput:
        """The input of one text (a record's, or one of its chunks'), keyed as every input of this model
        and these parameters is."""
        return EmbeddingInput(
            key=cache_key("embeddings", self.model, self._params, text),
            text=text,
            tokens=tokens,
            count=self.count_text,
            cut=cut,
        )

    def whole_text(self, record: Mapping[str, Any]) -> str:
        """The record's text to embed, however long. Raises RecordError."""
        return self._text.whole(record)

    def request_body(self, items: list[EmbeddingInput]) -> dict[str, Any]:
        # base64 float32 is ~4x smaller than a JSON float list and far cheaper to parse. A server
        # that refuses the field (its spec lists it, but a proxy or an older deployment may not)
        # gets the default, float, from then on: see _send.
        body = {"model": self.model, "input": [i.text for i in items], **self._params}
        if self._base64:
            body["encoding_format"] = "base64"
        return body

    def _resend_after(self, error: ApiError) -> bool:
        if self._base64 and error.status in (400, 422) and "encoding_format" in (error.message + str(error.field)):
            self._base64 = False
            return True
        return False

    def parse(self, response: Any, items: list[EmbeddingInput]) -> list[Result]:
        """One result per input, in input order. Raises InvalidAnswer when the answer cannot be right
        (see read_vectors)."""
        vectors = read_vectors(response, len(items), self._dimension)
        if self._dimension is None and vectors:
            self._dimension = int(vectors[0].shape[0])
        model = response.get("model") if isinstance(response.get("model"), str) else self.model
        total = prompt_tokens(response)
        self._calibrate(total, items)
        return results_of(vectors, items, model, total)
