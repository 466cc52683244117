"""Embedding batches fill to the server's limit as the server counts, learned from `usage`; a batch
refused as too large is split, and later batches start smaller. Vectors ask for base64 and read
either form back."""

import asyncio
import base64

import numpy as np

from destination_mistral.enrich import batching
from destination_mistral.enrich.embeddings import EmbeddingEnricher, decode_vector
from destination_mistral.http.errors import ApiError
from destination_mistral.settings import EmbeddingSettings


class CountingServer:
    """Counts `factor` server tokens per token of ours and refuses batches over `limit`."""

    def __init__(self, factor, limit=batching.MAX_TOKENS_PER_REQUEST):
        self.factor = factor
        self.limit = limit
        self.batches = []

    async def post(self, path, body, cost=0, validate=None, precheck=None, splittable=False):
        enricher = self.enricher
        tokens = sum(int(enricher._tokenizer.count(t) * self.factor) for t in body["input"])
        self.batches.append((len(body["input"]), tokens))
        if tokens > self.limit:
            raise ApiError("HTTP 400: Too many tokens overall, split into more batches.", 400, kind="too_large")
        answer = {
            "model": body["model"],
            "usage": {"prompt_tokens": tokens},
            "data": [{"index": i, "embedding": [1.0, 2.0]} for i in range(len(body["input"]))],
        }
        return validate(answer) if validate else answer


def run_all(enricher, count):
    async def main():
        items = [
            enricher.prepare({"t": f"review {i}: " + "the battery and the screen are fine, shipping was slow; " * 5})
            for i in range(count)
        ]
        results = []
        # Two waves: the second is batched after the first's answers have been seen.
        for wave in (items[: count // 3], items[count // 3 :]):
            futures = [asyncio.ensure_future(enricher.run(item)) for item in wave]
            await asyncio.sleep(0)
            enricher.flush()
            results += await asyncio.gather(*futures)
        return results

    return asyncio.run(main())


def test_batches_grow_to_the_calibrated_budget():
    server = CountingServer(factor=1.0)
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), server)
    server.enricher = enricher
    results = run_all(enricher, 3000)
    assert all(r.ok for r in results)
    tokens = [t for _, t in server.batches]
    blind = batching.MAX_TOKENS_PER_REQUEST * batching.TOKEN_MARGIN
    assert tokens[0] <= blind, "before any answer, the blind margin applies"
    assert max(tokens) > blind, "after calibration, batches should fill beyond the blind margin"
    assert max(tokens) <= batching.MAX_TOKENS_PER_REQUEST


def test_a_server_that_counts_more_gets_smaller_batches_without_failures():
    server = CountingServer(factor=1.3)
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), server)
    server.enricher = enricher
    results = run_all(enricher, 3000)
    assert all(r.ok for r in results), "a refused batch must be split and retried, never fail its records"
    assert len(results) == 3000


def test_vectors_decode_from_base64_and_from_floats():
    vector = np.arange(4, dtype="<f4")
    assert np.array_equal(decode_vector(base64.b64encode(vector.tobytes()).decode()), vector)
    assert np.array_equal(decode_vector([0.0, 1.0, 2.0, 3.0]), vector), "a server without base64 answers floats"
    assert decode_vector("not base64!") is None


def test_requests_ask_for_base64():
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),)), None)
    body = enricher.request_body([enricher.prepare({"t": "x"})])
    assert body["encoding_format"] == "base64"


class QueuedCountingServer(CountingServer):
    """Answers the first request at once and the others only after it, as a requests-per-second limit
    holds batches formed blind while the first answer calibrates the count."""

    async def post(self, path, body, cost=0, validate=None, precheck=None, splittable=False):
        if not hasattr(self, "first_answered"):
            self.first_answered = asyncio.Event()
        elif not self.first_answered.is_set():
            await self.first_answered.wait()
        if precheck is not None:
            precheck()
        try:
            return await super().post(path, body, cost, validate)
        finally:
            self.first_answered.set()


def submit_all_at_once(enricher, count):
    """Every input submitted before any answer (as a fast source does), then flushed."""

    async def main():
        items = [
            enricher.prepare({"t": f"review {i}: " + "the battery and the screen are fine, shipping was slow; " * 5})
            for i in range(count)
        ]
        futures = [enricher.submit(item) for item in items]
        enricher.flush()
        return await asyncio.gather(*futures)

    return asyncio.run(main())


def test_batches_waiting_their_turn_are_not_split_by_a_small_calibration():
    # The server counts 3% more than we do: the calibrated budget for new batches ends a little below
    # the blind one, but every batch already formed is still within the server's limit.
    server = QueuedCountingServer(factor=1.03)
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), server)
    server.enricher = enricher

    results = submit_all_at_once(enricher, 3000)
    assert all(r.ok for r in results)
    sizes = [n for n, _ in server.batches]
    assert all(t <= batching.MAX_TOKENS_PER_REQUEST for _, t in server.batches)
    assert min(sizes[:-1]) > max(sizes) / 2, f"a formed batch was split into a full one and a sliver: {sizes}"


def test_only_the_first_batch_is_formed_blind_the_rest_wait_for_its_calibration():
    server = QueuedCountingServer(factor=1.0)
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), server)
    server.enricher = enricher

    results = submit_all_at_once(enricher, 3000)
    assert all(r.ok for r in results) and len(results) == 3000
    blind = batching.MAX_TOKENS_PER_REQUEST * batching.TOKEN_MARGIN
    tokens = [t for _, t in server.batches]
    assert tokens[0] <= blind
    assert all(t > blind for t in tokens[1:-1]), (
        f"batches after the first answer fill to the calibrated budget: {tokens}"
    )
