"""Embedding batches stay under the per-request limits; the server's "too large" splits them."""

import asyncio

from destination_mistral.enrich.batching import MAX_INPUTS_PER_REQUEST, plan_batches
from destination_mistral.enrich.embeddings import EmbeddingEnricher
from destination_mistral.enrich.tokens import tokenizer_for
from destination_mistral.http.errors import ApiError, is_batch_too_large
from destination_mistral.settings import EmbeddingSettings


def test_batches_respect_input_and_token_limits():
    batches = plan_batches([10] * 1200, max_inputs=512, max_tokens=100_000)
    assert [len(b) for b in batches] == [512, 512, 176]
    batches = plan_batches([4000] * 10, max_inputs=512, max_tokens=14_000)
    assert all(len(b) * 4000 <= 14_000 for b in batches), "a batch exceeds the token budget"
    assert sum(len(b) for b in batches) == 10 and [i for b in batches for i in b] == list(range(10)), (
        "inputs lost or reordered"
    )


def test_an_input_over_the_budget_travels_alone():
    assert plan_batches([5, 20_000, 5], max_tokens=14_000) == [[0], [1], [2]]


def test_too_large_messages_are_recognised():
    assert is_batch_too_large(400, "HTTP 400: Too many tokens overall, split into more batches.")
    assert is_batch_too_large(400, "HTTP 400: Too many inputs in request, split into more batches.")
    assert not is_batch_too_large(400, "HTTP 400: Invalid model: x")


def test_tokenizer_counts_and_truncates_offline():
    tokenizer = tokenizer_for("mistral-embed")
    text = "battery life " * 100
    assert 150 <= tokenizer.count(text) <= 400
    cut = tokenizer.truncate(text, 20)
    assert tokenizer.count(cut) <= 21 and text.startswith(cut.strip()[:10])


class SplittingClient:
    """Rejects any batch above `limit` inputs the way the API does."""

    def __init__(self, limit):
        self.limit = limit
        self.sizes = []

    async def post(self, path, body, cost=0, validate=None, precheck=None, splittable=False):
        self.sizes.append(len(body["input"]))
        if len(body["input"]) > self.limit:
            raise ApiError("HTTP 400: Too many tokens overall, split into more batches.", 400, kind="too_large")
        answer = {
            "model": body["model"],
            "usage": {"prompt_tokens": 3 * len(body["input"])},
            "data": [{"index": i, "embedding": [float(i), 1.0]} for i in range(len(body["input"]))],
        }
        return validate(answer) if validate else answer


def test_rejected_batch_is_split_in_half_until_accepted():
    client = SplittingClient(limit=3)
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), client)
    items = [enricher.prepare({"t": f"text {i}"}) for i in range(10)]
    results = asyncio.run(enricher._send(items))
    assert len(results) == 10 and all(r.ok for r in results), "every input should end up embedded"
    assert client.sizes[0] == 10 and max(client.sizes[1:]) <= 5
    assert [r.value[0] for r in results][:3] == [0.0, 1.0, 0.0], "vectors must stay matched to their inputs"


def test_single_input_rejected_as_too_large_becomes_a_record_error():
    client = SplittingClient(limit=0)
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), client)
    results = asyncio.run(enricher._send([enricher.prepare({"t": "x"})]))
    assert results[0].error and "too long" in results[0].error


def test_input_over_context_is_truncated_or_flagged():
    long_text = "word " * 300
    truncating = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), max_input_tokens=50), None)
    assert truncating.prepare({"t": long_text}).tokens <= 50
    flagging = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), max_input_tokens=50, input_too_long="error"), None)
    try:
        flagging.prepare({"t": long_text})
    except Exception as error:
        assert "max_input_tokens" in str(error)
    else:
        raise AssertionError("an over-long input should be an error when input_too_long is error")


def test_max_inputs_constant_matches_the_api():
    assert MAX_INPUTS_PER_REQUEST == 512


def test_partial_batch_waits_for_more_input_only_while_another_batch_is_in_flight():
    import asyncio

    from destination_mistral.enrich.batching import Batcher

    async def scenario():
        sent: list[int] = []
        release = asyncio.Event()

        async def send(items):
            sent.append(len(items))
            await release.wait()
            return items

        batcher = Batcher(send, lambda _: 1, max_inputs=3, linger=0.02, max_linger=5.0)
        first = [batcher.submit(i) for i in range(3)]  # full: sent at once, and held in flight
        await asyncio.sleep(0)
        partial = batcher.submit(3)
        await asyncio.sleep(0.15)
        assert sent == [3], "while a batch is in flight, a partial one keeps waiting past `linger`"
        later = [batcher.submit(i) for i in (4, 5)]
        await asyncio.sleep(0)
        assert sent == [3, 3], "input that arrives meanwhile fills it"
        release.set()
        await asyncio.gather(*first, partial, *later)
        lone = batcher.submit(6)
        await asyncio.sleep(0.1)
        assert sent == [3, 3, 1], "with nothing in flight, a partial batch goes after `linger`"
        await lone

    asyncio.run(scenario())


def test_byte_bounded_families_match_the_loaded_tokenizers():
    """The bound used before any tokenizer is loaded must be one the tokenizer really honours."""
    from destination_mistral.enrich.tokens import (
        BYTE_BOUNDED_FAMILIES,
        _bounded_by_bytes,
        _family,
        _load,
        upper_bound_for,
    )

    for family in ("v1", "v3", "tekken"):
        assert _bounded_by_bytes(_load(family)._raw) == (family in BYTE_BOUNDED_FAMILIES), family
    for model in ("mistral-embed", "mistral-small-latest", "open-mixtral-8x22b"):
        for text in ("plain words", "émoji 🎉 and 漢字", "x" * 3000):
            assert upper_bound_for(model, text) >= _load(_family(model)).count(text)


def test_a_server_that_refuses_base64_gets_floats_and_nothing_is_lost():
    class NoBase64Client:
        def __init__(self):
            self.bodies = []

        async def post(self, path, body, cost=0, validate=None, precheck=None, splittable=False):
            self.bodies.append(dict(body))
            if "encoding_format" in body:
                raise ApiError(
                    "HTTP 422: Extra inputs are not permitted (body.encoding_format)",
                    422,
                    kind="config",
                    field="encoding_format",
                )
            answer = {
                "model": body["model"],
                "usage": {"prompt_tokens": 2 * len(body["input"])},
                "data": [{"index": i, "embedding": [float(i), 0.5]} for i in range(len(body["input"]))],
            }
            return validate(answer) if validate else answer

    client = NoBase64Client()
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=2), client)
    items = [enricher.prepare({"t": f"text {i}"}) for i in range(3)]
    first = asyncio.run(enricher._send(items))
    assert all(r.ok for r in first) and [r.value[0] for r in first] == [0.0, 1.0, 2.0], (
        "the refused batch is sent again as floats"
    )
    asyncio.run(enricher._send(items[:1]))
    assert [("encoding_format" in b) for b in client.bodies] == [True, False, False], (
        "base64 is asked for once, then never again"
    )
