"""Embeddings: the text built from a record, batched requests and what a refused batch teaches.

How large a batch may be is in embedding_limits.py, the inputs held while the first answer is awaited
in held_inputs.py, and reading the vectors back in embedding_answers.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

from destination_mistral.enrich import batching
from destination_mistral.enrich.batching import plan_batches, too_many_inputs
from destination_mistral.enrich.embedding_answers import decode_vector, prompt_tokens, read_vectors, results_of
from destination_mistral.enrich.embedding_input import EmbeddingInput
from destination_mistral.enrich.embedding_limits import ROUTE, BatchLimits
from destination_mistral.enrich.held_inputs import HoldingBatcher
from destination_mistral.enrich.results import Result, cache_key, failed
from destination_mistral.enrich.templates import RecordError, compile_template, render, text_from_fields
from destination_mistral.enrich.tokens import upper_bound_for
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


class EmbeddingEnricher:
    kind = "embeddings"

    def __init__(self, settings: EmbeddingSettings, client: MistralClient | None) -> None:
        self.settings = settings
        self.client = client
        self.model = settings.model
        self._template = compile_template(settings.template, "template") if settings.template else None
        self._params = {"output_dimension": settings.output_dimension} if settings.output_dimension else {}
        self._batches: HoldingBatcher[EmbeddingInput, Result] | None = None
        self._base64 = True
        self._limits = BatchLimits(client)
        # The vector size every answer must have: known for the model, else the first one seen.
        self._dimension = self.dimension

    @property
    def dimension(self) -> int | None:
        return self.settings.output_dimension or KNOWN_DIMENSIONS.get(self.model)

    @cached_property
    def _tokenizer(self):
        from destination_mistral.enrich.tokens import tokenizer_for

        return tokenizer_for(self.model)

    def prepare(self, record: Mapping[str, Any]) -> EmbeddingInput:
        text = (
            render(self._template, record)
            if self._template is not None
            else text_from_fields(record, self.settings.fields)
        )
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
        return EmbeddingInput(
            key=cache_key("embeddings", self.model, self._params, text), text=text, tokens=tokens, count=self.count_text
        )

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

    def body_for(self, item: EmbeddingInput) -> dict[str, Any]:
        return self.request_body([item])

    def count_tokens(self, items: list[EmbeddingInput]) -> None:
        """Takes the token counts that batching will need, for many inputs at once (off the event
        loop: see the tokenizer's count_many)."""
        todo = [item for item in items if not item.counted]
        if todo:
            for item, count in zip(todo, self._tokenizer.count_many([item.text for item in todo]), strict=False):
                item.set_tokens(count)

    async def run(self, item: EmbeddingInput) -> Result:
        return await self.submit(item)

    def submit(self, item: EmbeddingInput) -> asyncio.Future[Result]:
        """The future of the item's result: one batch slot, no task of its own per record."""
        if self._batches is None:
            self._batches = HoldingBatcher(
                self._send,
                lambda i: i.tokens,
                self._limits.budget,
                max_inputs=self._limits.input_cap,
                max_linger=batching.MAX_LINGER_SECONDS,
            )
        return self._batches.submit(item)

    def flush(self) -> None:
        if self._batches is not None:
            self._batches.flush()

    @property
    def max_tokens(self) -> int:
        return self._limits.budget()

    def _rebudget(self) -> None:
        if self._batches is not None:
            self._batches.rebudget()

    def _precheck(self, items: list[EmbeddingInput]) -> Callable[[], None]:
        def check() -> None:
            # A batch formed before a refusal lowered the caps is split before it is sent, not after
            # the server refuses it too.
            if not self._limits.fits(items):
                raise _Resplit()

        return check

    async def _send(self, items: list[EmbeddingInput]) -> list[Result]:
        if not self._limits.fits(items):
            return await self._send_split(items)
        try:
            return await self.client.post(
                "embeddings",
                self.request_body(items),
                cost=sum(i.tokens for i in items),
                # Checked inside the client's retry loop: an answer of the wrong shape is sent again.
                validate=lambda response: self.parse(response, items),
                precheck=self._precheck(items),
                splittable=len(items) > 1,
            )
        except _Resplit:
            return await self._send_split(items)
        except ApiError as error:
            if self._base64 and error.status in (400, 422) and "encoding_format" in (error.message + str(error.field)):
                self._base64 = False
                return await self._send(items)
            if error.kind == "config":
                raise error.as_config_error(ROUTE) from None
            if error.kind == "too_large":
                self._learn_refusal(error.message, items)
                if len(items) > 1:
                    return await self._send_halves(items)
                return [failed(f"{error.message} (the input alone is too long for the model)", kind="input")]
            if len(items) > 1:
                # A refusal for one input's content refuses its whole batch: halves find that input,
                # and the others get their vectors.
                return await self._send_halves(items)
            return [failed(error.message, kind="input")]

    async def _send_split(self, items: list[EmbeddingInput]) -> list[Result]:
        """The batch again, as batches under the current caps (halves if it already fits them)."""
        groups = plan_batches([i.tokens for i in items], max_inputs=self._limits.input_cap, max_tokens=self.max_tokens)
        if len(groups) < 2:
            return await self._send_halves(items)
        parts = await asyncio.gather(*(self._send([items[i] for i in group]) for group in groups))
        return [result for part in parts for result in part]

    async def _send_halves(self, items: list[EmbeddingInput]) -> list[Result]:
        half = len(items) // 2
        first, second = await asyncio.gather(self._send(items[:half]), self._send(items[half:]))
        return first + second

    def _learn_refusal(self, message: str, items: list[EmbeddingInput]) -> None:
        """Lowers the cap the refusal is about, for every later batch of the sync."""
        if too_many_inputs(message):
            self._limits.lower_input_cap(len(items))
            if self._batches is not None:
                self._batches.cap_inputs(self._limits.input_cap)
        elif len(items) > 1:
            self._limits.lower_token_ceiling(message, sum(i.tokens for i in items) or 1)
            self._rebudget()

    def parse(self, response: Any, items: list[EmbeddingInput]) -> list[Result]:
        """One result per input, in input order. Raises InvalidAnswer when the answer cannot be right
        (see read_vectors)."""
        vectors = read_vectors(response, len(items), self._dimension)
        if self._dimension is None and vectors:
            self._dimension = int(vectors[0].shape[0])
        model = response.get("model") if isinstance(response.get("model"), str) else self.model
        total = prompt_tokens(response)
        if total is not None and total > 0 and self._limits.calibrate(total / (sum(i.tokens for i in items) or 1)):
            self._rebudget()
        return results_of(vectors, items, model, total)


class _Resplit(Exception):
    """A batch that no longer fits the caps, caught before it was sent."""
