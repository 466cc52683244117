"""Embedding batches learn from the server's refusals: a batch refused for too many inputs or tokens
lowers that cap for the rest of the sync, and batches formed before the refusal are split before they
are sent, so each kind of refusal happens once per sync, not on every full batch."""

import asyncio

import pytest

from destination_mistral.enrich import batching
from destination_mistral.enrich.embeddings import EmbeddingEnricher
from destination_mistral.http.errors import ApiError
from destination_mistral.settings import EmbeddingSettings


class LimitedServer:
    """Refuses as the API does, with batches in flight at once (each answer takes a moment). Like the
    client, it lets the first request go alone and calls `precheck` just before each send."""

    def __init__(self, max_inputs=512, max_tokens=16_384, message="overall", factor=1.0):
        self.max_inputs = max_inputs
        self.max_tokens = max_tokens
        self.message = message
        self.factor = factor
        self.refusals = {"inputs": 0, "tokens": 0}
        self.sizes = []

    async def post(self, path, body, cost=0, validate=None, precheck=None, splittable=False):
        if not hasattr(self, "probed"):
            self.probed = asyncio.Event()
            first = True
        else:
            first = False
            await self.probed.wait()
        try:
            if precheck is not None:
                precheck()
            await asyncio.sleep(0.002)
            return self._answer(body, validate)
        finally:
            if first:
                self.probed.set()

    def _answer(self, body, validate):
        inputs = body["input"]
        tokens = int(sum(self.enricher._tokenizer.count(t) for t in inputs) * self.factor)
        if len(inputs) > self.max_inputs:
            self.refusals["inputs"] += 1
            raise ApiError("HTTP 400: Too many inputs in request, split into more batches.", 400, kind="too_large")
        if tokens > self.max_tokens:
            self.refusals["tokens"] += 1
            text = (
                f"HTTP 400: Too many tokens in batch. Max is {self.max_tokens} got {tokens}"
                if self.message == "stated"
                else "HTTP 400: Too many tokens overall, split into more batches."
            )
            raise ApiError(text, 400, kind="too_large")
        self.sizes.append(len(inputs))
        answer = {
            "model": "mistral-embed",
            "usage": {"prompt_tokens": tokens},
            "data": [{"index": i, "embedding": [0.5, 0.5]} for i in range(len(inputs))],
        }
        return validate(answer)


def sync(server, texts):
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), server)
    server.enricher = enricher

    async def main():
        items = [enricher.prepare({"t": t}) for t in texts]
        enricher.count_tokens(items)
        futures = [enricher.submit(item) for item in items]
        enricher.flush()
        return await asyncio.gather(*futures)

    return asyncio.run(main())


def test_too_many_inputs_is_refused_once_and_the_cap_holds_for_the_sync():
    server = LimitedServer(max_inputs=128)
    results = sync(server, [f"short text {i}" for i in range(3000)])
    assert all(r.ok for r in results) and len(results) == 3000
    assert server.refusals["inputs"] == 1, f"one refusal teaches the cap: {server.refusals}"
    assert max(server.sizes) <= 128


def test_a_stated_token_limit_is_refused_once():
    server = LimitedServer(max_tokens=6_000, message="stated")
    text = "the battery lasts all day and the screen is bright, shipping was slow " * 3
    results = sync(server, [f"{i} {text}" for i in range(1500)])
    assert all(r.ok for r in results)
    assert server.refusals["tokens"] == 1, f"the server said its limit: one refusal is enough: {server.refusals}"


def test_a_server_counting_more_than_us_refuses_rarely_and_every_record_gets_its_vector():
    server = LimitedServer(factor=1.3)
    text = "the battery lasts all day and the screen is bright, shipping was slow " * 3
    results = sync(server, [f"{i} {text}" for i in range(3000)])
    assert all(r.ok for r in results)
    assert server.refusals["tokens"] <= 2, f"the lowered cap must hold for later batches: {server.refusals}"


def test_refusal_messages_are_read_for_their_numbers():
    assert batching.tokens_max_and_count("Too many tokens in batch. Max is 16384 got 17001") == (16384, 17001)
    assert batching.tokens_max_and_count(
        "the request costs 20500 tokens and the limit of 20000 tokens per minute "
        "allows at most 20000 at once; split into more batches."
    ) == (20000, 20500)
    assert batching.tokens_max_and_count("Too many tokens overall, split into more batches.") is None
    assert batching.lower_input_cap(512) == 128 and batching.lower_input_cap(100) == 50


@pytest.mark.parametrize("failing_part_ends", ["last", "first"])
def test_the_answered_part_of_a_split_batch_reaches_its_records_when_another_part_fails_the_sync(failing_part_ends):
    """A batch refused as too large goes again in parts; a part answered (and paid for) is kept by
    its records even when another part is refused until the sync stops, whether that happens before
    or after the answer arrives, so that the cache keeps it and the next attempt does not pay again."""
    delays = {"failing": 0.05, "answered": 0.0} if failing_part_ends == "last" else {"failing": 0.0, "answered": 0.05}

    class SyncStops(Exception):
        pass

    class HalfThrottledServer:
        def __init__(self):
            self.answered = 0

        async def post(self, path, body, cost=0, validate=None, precheck=None, splittable=False):
            inputs = body["input"]
            if len(inputs) == 8:
                raise ApiError("HTTP 400: Too many tokens overall, split into more batches.", 400, kind="too_large")
            if inputs[0].startswith("second"):
                await asyncio.sleep(delays["failing"])  # refused over and over, until nothing has succeeded for long
                raise SyncStops()
            await asyncio.sleep(delays["answered"])
            self.answered += len(inputs)
            data = [{"index": i, "embedding": [0.5, 0.5]} for i in range(len(inputs))]
            return validate({"model": "mistral-embed", "usage": {"prompt_tokens": 40}, "data": data})

    server = HalfThrottledServer()
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), server)
    texts = [f"first {i}" for i in range(4)] + [f"second {i}" for i in range(4)]

    async def main():
        items = [enricher.prepare({"t": t}) for t in texts]
        enricher.count_tokens(items)
        futures = [enricher.submit(item) for item in items]
        enricher.flush()
        await asyncio.gather(*futures, return_exceptions=True)
        return futures

    futures = asyncio.run(main())
    assert server.answered == 4
    assert all(f.exception() is None and f.result().ok for f in futures[:4]), "the answered part is kept"
    assert all(isinstance(f.exception(), SyncStops) for f in futures[4:]), "the refused part fails the sync"
