"""Embeddings: the text built from a record, batched requests, and vectors read back."""

from __future__ import annotations

import asyncio
import base64
from functools import cached_property
from typing import Any, Callable, Mapping

import numpy as np

from destination_mistral import batching
from destination_mistral.batching import Batcher, is_batch_too_large
from destination_mistral.client import ApiError, MistralClient
from destination_mistral.config import EmbeddingSettings
from destination_mistral.results import Result, cache_key, failed
from destination_mistral.templates import RecordError, compile_template, render, text_from_fields
from destination_mistral.tokens import upper_bound_for

# Native sizes, so that a table's FLOAT[n] column can be created before the first vector arrives.
KNOWN_DIMENSIONS = {"mistral-embed": 1024, "mistral-embed-2312": 1024, "codestral-embed": 1536, "codestral-embed-2505": 1536}


class EmbeddingInput:
    """One text to embed. Its token count is taken when first needed (to fill a batch), so an
    input the cache answers is never tokenized, unless it might be over the model's limit."""

    __slots__ = ("key", "text", "_tokens", "_count")

    def __init__(self, key: str, text: str, tokens: int | None = None, count: Callable[[str], int] | None = None) -> None:
        self.key = key
        self.text = text
        self._tokens = tokens
        self._count = count  # loads the tokenizer on first use

    @property
    def tokens(self) -> int:
        if self._tokens is None:
            self._tokens = self._count(self.text)
        return self._tokens

    def __repr__(self) -> str:  # never the text: it is record content
        return f"EmbeddingInput(key={self.key!r}, chars={len(self.text)}, tokens={self._tokens!r})"


class EmbeddingEnricher:
    kind = "embeddings"

    def __init__(self, settings: EmbeddingSettings, client: MistralClient | None) -> None:
        self.settings = settings
        self.client = client
        self.model = settings.model
        self._template = compile_template(settings.template, "template") if settings.template else None
        self._params = {"output_dimension": settings.output_dimension} if settings.output_dimension else {}
        self._batcher: Batcher | None = None
        self._base64 = True
        # Server tokens per token of ours, the highest seen in `usage`: once known, batches fill to
        # just under the server's limit instead of keeping the blind margin.
        self._token_ratio: float | None = None

    @property
    def dimension(self) -> int | None:
        return self.settings.output_dimension or KNOWN_DIMENSIONS.get(self.model)

    @cached_property
    def _tokenizer(self):
        from destination_mistral.tokens import tokenizer_for

        return tokenizer_for(self.model)

    def prepare(self, record: Mapping[str, Any]) -> EmbeddingInput:
        text = render(self._template, record) if self._template is not None else text_from_fields(record, self.settings.fields)
        if not text.strip():
            raise RecordError("the text to embed is empty")
        limit = self.settings.max_input_tokens
        bound = upper_bound_for(self.model, text)
        tokens = None if bound is not None and bound <= limit else self._tokenizer.count(text)
        if tokens is not None and tokens > limit:
            if self.settings.input_too_long == "error":
                raise RecordError(f"the text to embed has {tokens} tokens, over max_input_tokens {limit}")
            text = self._tokenizer.truncate(text, limit)
            tokens = min(limit, self._tokenizer.count(text))
        return EmbeddingInput(key=cache_key("embeddings", self.model, self._params, text), text=text, tokens=tokens,
                              count=self.count_text)

    def count_text(self, text: str) -> int:
        return self._tokenizer.count(text)

    def request_body(self, items: list[EmbeddingInput]) -> dict[str, Any]:
        # base64 float32 is ~4x smaller than a JSON float list and far cheaper to parse. A server
        # that refuses the field (its spec lists it, but a proxy or an older deployment may not)
        # gets the default, float, from then on: see _send.
        body = {"model": self.model, "input": [i.text for i in items], **self._params}
        if self._base64:
            body["encoding_format"] = "base64"
        return body

    def count_tokens(self, items: list[EmbeddingInput]) -> None:
        """Takes the token counts that batching will need, for many inputs at once (off the event
        loop: see the tokenizer's count_many)."""
        todo = [item for item in items if item._tokens is None]
        if todo:
            for item, count in zip(todo, self._tokenizer.count_many([item.text for item in todo])):
                item._tokens = count

    async def run(self, item: EmbeddingInput) -> Result:
        return await self.submit(item)

    def submit(self, item: EmbeddingInput) -> "asyncio.Future[Result]":
        """The future of the item's result: one batch slot, no task of its own per record."""
        if self._batcher is None:
            self._batcher = Batcher(
                self._send, lambda i: i.tokens, max_inputs=batching.MAX_INPUTS_PER_REQUEST,
                max_tokens=int(batching.MAX_TOKENS_PER_REQUEST * batching.TOKEN_MARGIN), max_linger=batching.MAX_LINGER_SECONDS,
            )
        return self._batcher.submit(item)

    def flush(self) -> None:
        if self._batcher is not None:
            self._batcher.flush()

    async def _send(self, items: list[EmbeddingInput]) -> list[Result]:
        try:
            response = await self.client.post("embeddings", self.request_body(items))
        except ApiError as error:
            if self._base64 and error.status in (400, 422) and "encoding_format" in error.message:
                self._base64 = False
                return await self._send(items)
            if is_batch_too_large(error.status, error.message):
                if self._batcher is not None and len(items) > 1:
                    # The server counts more than we thought: later batches start smaller.
                    self._batcher.max_tokens = max(1, min(self._batcher.max_tokens, int(sum(i.tokens for i in items) * 0.9)))
                if len(items) > 1:
                    half = len(items) // 2
                    first, second = await asyncio.gather(self._send(items[:half]), self._send(items[half:]))
                    return first + second
                return [failed(f"{error.message} (the input alone is too long for the model)")]
            return [failed(error.message)] * len(items)
        return self.parse(response, items)

    def _calibrate(self, ratio: float) -> None:
        if self._token_ratio is not None and ratio <= self._token_ratio:
            return
        self._token_ratio = ratio
        if self._batcher is not None:
            budget = int(batching.MAX_TOKENS_PER_REQUEST * batching.CALIBRATED_MARGIN / max(ratio, 0.5))
            # Never above the blind budget's upper bound by more than the limit itself allows.
            self._batcher.max_tokens = min(budget, batching.MAX_TOKENS_PER_REQUEST)

    def parse(self, response: Any, items: list[EmbeddingInput]) -> list[Result]:
        data = response.get("data") if isinstance(response, Mapping) else None
        if not isinstance(data, list) or len(data) != len(items):
            return [failed("the embeddings response does not have one vector per input")] * len(items)
        usage = response.get("usage") or {}
        model = response.get("model") or self.model
        total = usage.get("prompt_tokens")
        ours = sum(i.tokens for i in items) or 1
        if isinstance(total, int) and total > 0:
            self._calibrate(total / ours)
        ordered = sorted(data, key=lambda d: d.get("index", 0))
        results = []
        for item, entry in zip(items, ordered):
            vector = decode_vector(entry.get("embedding"))
            if vector is None:
                results.append(failed("the embeddings response has an unreadable vector"))
                continue
            # The API reports tokens per request; each record gets its share, by our token counts.
            share = round(total * item.tokens / ours) if isinstance(total, int) else item.tokens
            results.append(Result(value=vector, model=model, prompt_tokens=share, completion_tokens=0))
        return results


def decode_vector(raw: Any) -> np.ndarray | None:
    if isinstance(raw, str):
        try:
            return np.frombuffer(base64.b64decode(raw), dtype="<f4").astype(np.float32, copy=False)
        except (ValueError, TypeError):
            return None
    if isinstance(raw, list) and raw:
        return np.asarray(raw, dtype=np.float32)
    return None
