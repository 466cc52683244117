"""Embeddings: the text built from a record, batched requests, and vectors read back."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import numpy as np

from destination_mistral.enrich import batching
from destination_mistral.enrich.batching import (
    Batcher,
    lower_input_cap,
    plan_batches,
    tokens_max_and_count,
    too_many_inputs,
)
from destination_mistral.enrich.results import Result, cache_key, failed
from destination_mistral.enrich.templates import RecordError, compile_template, render, text_from_fields
from destination_mistral.enrich.tokens import upper_bound_for
from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import ApiError, InvalidAnswer
from destination_mistral.settings import EmbeddingSettings

# Native sizes, so that a table's FLOAT[n] column can be created before the first vector arrives.
KNOWN_DIMENSIONS = {
    "mistral-embed": 1024,
    "mistral-embed-2312": 1024,
    "codestral-embed": 1536,
    "codestral-embed-2505": 1536,
}


class EmbeddingInput:
    """One text to embed. Its token count is taken when first needed (to fill a batch), so an
    input the cache answers is never tokenized, unless it might be over the model's limit."""

    __slots__ = ("key", "text", "_tokens", "_count")

    def __init__(
        self, key: str, text: str, tokens: int | None = None, count: Callable[[str], int] | None = None
    ) -> None:
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
        # Caps a refusal taught ("too many inputs", "too many tokens"): they hold for the rest of the
        # sync, so that each kind of refusal happens once, not on every full batch.
        self._input_cap = batching.MAX_INPUTS_PER_REQUEST
        self._token_ceiling = batching.MAX_TOKENS_PER_REQUEST
        # The vector size every answer must have: known for the model, else the first one seen.
        self._dimension = self.dimension
        # Inputs that arrive while the first batch awaits its answer wait here, unbatched: the answer
        # calibrates the count, and batches formed before it would keep the blind margin (5% fewer
        # inputs each, so 5% more requests under a requests-per-second limit). The client sends
        # nothing else before that answer anyway.
        self._held: list[tuple[EmbeddingInput, asyncio.Future]] = []
        self._first_answered = False
        self._flush_held = False

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

    def count_tokens(self, items: list[EmbeddingInput]) -> None:
        """Takes the token counts that batching will need, for many inputs at once (off the event
        loop: see the tokenizer's count_many)."""
        todo = [item for item in items if item._tokens is None]
        if todo:
            for item, count in zip(todo, self._tokenizer.count_many([item.text for item in todo]), strict=False):
                item._tokens = count

    async def run(self, item: EmbeddingInput) -> Result:
        return await self.submit(item)

    def submit(self, item: EmbeddingInput) -> asyncio.Future[Result]:
        """The future of the item's result: one batch slot, no task of its own per record."""
        if self._batcher is None:
            self._batcher = Batcher(
                self._send_first,
                lambda i: i.tokens,
                max_inputs=self._input_cap,
                max_tokens=self._budget(),
                max_linger=batching.MAX_LINGER_SECONDS,
            )
        elif not self._first_answered and self._batcher.in_flight:
            future = asyncio.get_running_loop().create_future()
            self._held.append((item, future))
            return future
        else:
            self._batcher.max_tokens = self._budget()
        return self._batcher.submit(item)

    async def _send_first(self, items: list[EmbeddingInput]) -> list[Result]:
        try:
            return await self._send(items)
        finally:
            if not self._first_answered:
                self._first_answered = True
                self._release_held()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        self._batcher.max_tokens = self._budget()
        for item, future in held:
            _follow(self._batcher.submit(item), future)
        if self._flush_held:
            self._batcher.flush()

    def _budget(self) -> int:
        """Tokens per batch (our count): the server's per-request limit with its margin (blind, or
        calibrated by `usage`), what a refusal taught, and a share of the account's tokens per minute,
        so that on a small account one batch is not most of a minute's budget (the pacer's bucket must
        hold the largest request, and what it holds is taken from the rate)."""
        if self._token_ratio is None:
            budget = int(batching.MAX_TOKENS_PER_REQUEST * batching.TOKEN_MARGIN)
        else:
            budget = min(
                int(batching.MAX_TOKENS_PER_REQUEST * batching.CALIBRATED_MARGIN / max(self._token_ratio, 0.5)),
                batching.MAX_TOKENS_PER_REQUEST,
            )
        budget = min(budget, self._token_ceiling)
        pacer = getattr(self.client, "pacer", None)
        per_minute = pacer.tokens_per_minute if pacer is not None else None
        if per_minute:
            ratio = pacer.ratios.get("POST /v1/embeddings", 1.0)
            budget = min(budget, int(per_minute * batching.TPM_SHARE_PER_BATCH / max(ratio, 0.1)))
        return max(1, budget)

    def flush(self) -> None:
        if self._batcher is None:
            return
        if not self._first_answered and self._batcher.in_flight:
            self._flush_held = True  # what waits goes out, in calibrated batches, with the first answer
            return
        self._batcher.flush()

    @property
    def max_tokens(self) -> int:
        return self._budget()

    def _fits(self, items: list[EmbeddingInput]) -> bool:
        """Whether a batch already formed may be sent as it is: within what the server is known to
        accept (its per-request limit by the calibrated count, and what a refusal taught). The margin
        and the share of the minute that size new batches are not applied again: a calibration a
        little above the blind margin would split every batch waiting for its turn into a full one
        and a sliver, two requests for one under a requests-per-second limit."""
        if len(items) <= 1:
            return True
        tokens = sum(i.tokens for i in items)
        return (
            len(items) <= self._input_cap
            and tokens <= self._token_ceiling
            and tokens * (self._token_ratio or 1.0) <= batching.MAX_TOKENS_PER_REQUEST
        )

    def _precheck(self, items: list[EmbeddingInput]) -> Callable[[], None]:
        def check() -> None:
            # A batch formed before a refusal lowered the caps is split before it is sent, not after
            # the server refuses it too.
            if not self._fits(items):
                raise _Resplit()

        return check

    async def _send(self, items: list[EmbeddingInput]) -> list[Result]:
        if not self._fits(items):
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
                raise error.as_config_error("POST /v1/embeddings") from None
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
        groups = plan_batches([i.tokens for i in items], max_inputs=self._input_cap, max_tokens=self.max_tokens)
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
        ours = sum(i.tokens for i in items) or 1
        if too_many_inputs(message):
            self._input_cap = min(self._input_cap, lower_input_cap(len(items)))
            if self._batcher is not None:
                self._batcher.max_inputs = min(self._batcher.max_inputs, self._input_cap)
            return
        if len(items) <= 1:
            return
        stated = tokens_max_and_count(message)
        if stated is not None:
            limit, counted = stated
            # The server says both its limit and its count: the ratio of its count to ours tells how
            # many of our tokens fit.
            ratio = max(counted / ours, 0.5)
            self._token_ratio = max(self._token_ratio or 0.0, ratio)
            ceiling = int(limit * batching.CALIBRATED_MARGIN / ratio)
        else:
            # "Too many tokens overall": the server counts more than we thought, by how much unknown;
            # a quarter less covers a count a third above ours.
            ceiling = int(ours * 0.75)
        self._token_ceiling = max(1, min(self._token_ceiling, ceiling))
        if self._batcher is not None:
            self._batcher.max_tokens = self._budget()

    def _calibrate(self, ratio: float) -> None:
        if self._token_ratio is not None and ratio <= self._token_ratio:
            return
        self._token_ratio = ratio
        if self._batcher is not None:
            self._batcher.max_tokens = self._budget()

    def parse(self, response: Any, items: list[EmbeddingInput]) -> list[Result]:
        """One result per input, in input order. Raises InvalidAnswer when the answer cannot be right:
        the service failed, and storing it would store a wrong vector (or lose one) silently."""
        if not isinstance(response, Mapping):
            raise InvalidAnswer("an embeddings answer that is not a JSON object")
        data = response.get("data")
        if not isinstance(data, list):
            raise InvalidAnswer("an embeddings answer without a data list")
        if len(data) != len(items):
            raise InvalidAnswer(f"an embeddings answer with {len(data)} vectors for {len(items)} inputs")
        indexes = [entry.get("index") if isinstance(entry, Mapping) else None for entry in data]
        if any(not isinstance(i, int) or isinstance(i, bool) for i in indexes):
            if all(i is None for i in indexes):  # no indexes at all: the answer's order is the input's
                indexes = list(range(len(data)))
            else:
                raise InvalidAnswer("an embeddings answer with a missing or non-integer index")
        if sorted(indexes) != list(range(len(items))):
            raise InvalidAnswer("an embeddings answer whose indexes are not each input's once (duplicate or missing)")
        by_index: list[Any] = [None] * len(items)
        for index, entry in zip(indexes, data, strict=False):
            by_index[index] = entry
        vectors = []
        for entry in by_index:
            vector = decode_vector(entry.get("embedding"))
            if vector is None:
                raise InvalidAnswer("an embeddings answer with an unreadable vector (not numbers, or bad base64)")
            if not np.isfinite(vector).all():
                raise InvalidAnswer("an embeddings answer with NaN or infinite values in a vector")
            expected = self._dimension or vector.shape[0]
            if vector.shape[0] != expected:
                raise InvalidAnswer(f"an embeddings answer with a vector of size {vector.shape[0]}, not {expected}")
            vectors.append(vector)
        if self._dimension is None and vectors:
            self._dimension = int(vectors[0].shape[0])
        usage = response.get("usage") if isinstance(response.get("usage"), Mapping) else {}
        model = response.get("model") if isinstance(response.get("model"), str) else self.model
        total = usage.get("prompt_tokens")
        total = total if isinstance(total, int) and not isinstance(total, bool) else None
        ours = sum(i.tokens for i in items) or 1
        if total is not None and total > 0:
            self._calibrate(total / ours)
        results = []
        for item, vector in zip(items, vectors, strict=False):
            # The API reports tokens per request; each record gets its share, by our token counts.
            share = round(total * item.tokens / ours) if total is not None else item.tokens
            results.append(Result(value=vector, model=model, prompt_tokens=share, completion_tokens=0))
        return results


class _Resplit(Exception):
    """A batch that no longer fits the caps, caught before it was sent."""


def decode_vector(raw: Any) -> np.ndarray | None:
    """The vector of an answer (base64 float32 or a list of numbers), or None when it is not one."""
    if isinstance(raw, str):
        try:
            data = base64.b64decode(raw, validate=True)
        except (ValueError, TypeError):
            return None
        if not data or len(data) % 4:
            return None
        return np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)
    if isinstance(raw, list) and raw:
        try:
            array = np.asarray(raw)
        except (ValueError, TypeError):
            return None
        # Numbers only: numpy would happily turn "1.5" or True into a float.
        if array.ndim != 1 or array.dtype.kind not in "fiu":
            return None
        return array.astype(np.float32, copy=False)
    return None


def _follow(source: asyncio.Future, target: asyncio.Future) -> None:
    """`target` ends as `source` does (the future handed out for a held input)."""

    def copy(done: asyncio.Future) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)
