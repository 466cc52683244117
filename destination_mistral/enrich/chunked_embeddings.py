"""Chunked embeddings: a record's text split into chunks by the embedding model's own tokenizer
(chunking.py), each chunk embedded as any text is, and the record's result the list of its chunks
with their vectors, which the outputs write as rows of the stream's `_chunks` table.

The chunks travel as ordinary embedding inputs through the embedding enricher the delivery gives
(online, or the Batch API's), so they share its batches, pacing, retries and limits. The record's
result is one value, cached under the record's key, so an unchanged record is paid once: the cache
keeps each chunk's vector as the embedding of the chunk's text, and the record's row lists their keys
(sinks/cache_values.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from destination_mistral.enrich.base import Enricher
from destination_mistral.enrich.chunking import Chunk, Chunker
from destination_mistral.enrich.embedding_input import EmbeddingInput
from destination_mistral.enrich.embeddings import EmbeddingEnricher
from destination_mistral.enrich.results import Result, cache_key
from destination_mistral.enrich.templates import RecordError
from destination_mistral.settings import ChunkingSettings, EmbeddingSettings


class ChunkedInput:
    """One record's chunks and the embedding input of each."""

    __slots__ = ("key", "chunks", "inputs", "split_cpu", "known")
    cut = False  # a chunked text is embedded whole, in pieces

    def __init__(self, key: str, chunks: list[Chunk], inputs: list[EmbeddingInput], split_cpu: float = 0.0) -> None:
        self.key = key
        self.chunks = chunks
        self.inputs = inputs
        self.split_cpu = split_cpu  # CPU seconds the split took, for the sync's summary
        # Chunks already answered (cached, or paid earlier in this sync), by chunk key: not sent again.
        self.known: dict[str, Result] = {}

    @property
    def chunk_keys(self) -> list[str]:
        return [chunk_input.key for chunk_input in self.inputs]

    @property
    def tokens(self) -> int:
        return sum(chunk.tokens for chunk in self.chunks)

    def __repr__(self) -> str:  # never the text: it is record content
        return f"ChunkedInput(key={self.key!r}, chunks={len(self.chunks)}, tokens={self.tokens})"


class ChunkedEmbeddingEnricher:
    # The cache's name for a record's chunks: not "embeddings", whose entries hold one vector.
    kind = "embeddings/chunks"
    endpoint = "embeddings"

    def __init__(
        self,
        settings: EmbeddingSettings,
        embedder: EmbeddingEnricher,
        delivery: Enricher,
        admit: Callable[[EmbeddingInput], EmbeddingInput] = lambda item: item,
    ) -> None:
        chunking: ChunkingSettings = settings.chunking
        self.model = settings.model
        self._embedder = embedder  # reads records and keys texts
        self._delivery = delivery  # sends the chunks: the embedder itself, or its Batch API delivery
        self._admit = admit  # auto delivery's choice of way for each chunk
        self._chunker = Chunker.for_model(
            settings.model, chunking.max_tokens, chunking.overlap_tokens, chunking.split_on
        )
        # A change of chunking makes other chunks: other records' keys, so nothing stale is reused.
        self._params = {
            "output_dimension": settings.output_dimension,
            "max_tokens": chunking.max_tokens,
            "overlap_tokens": chunking.overlap_tokens,
            "split_on": chunking.split_on,
        }

        # Each chunk's request by its key while it is in flight, so that records sharing a chunk (a
        # signature, a boilerplate paragraph) pay for it once.
        self._pending: dict[str, asyncio.Future[Result]] = {}
        # Told each chunk's answer as it arrives (the pipeline keeps it for the cache), so that a sync
        # that fails or is killed before a record's last chunk does not pay again for the others.
        self.on_chunk_answer: Callable[[str, Result], None] | None = None

    @property
    def dimension(self) -> int | None:
        return self._embedder.dimension

    def prepare(self, record: Mapping[str, Any]) -> ChunkedInput:
        text = self._embedder.whole_text(record)
        started = time.thread_time()
        chunks = self._chunker.split(text)
        split_cpu = time.thread_time() - started
        if not chunks:
            raise RecordError("the text to embed is empty")
        inputs = [self._admit(self._embedder.input_for(chunk.text, chunk.tokens)) for chunk in chunks]
        key = cache_key(self.kind, self.model, self._params, [i.key for i in inputs])
        return ChunkedInput(key, chunks, inputs, split_cpu)

    def count_tokens(self, items: list[ChunkedInput]) -> None:
        """Nothing to count: the chunker counted every chunk."""

    def submit(self, item: ChunkedInput) -> asyncio.Future[Result]:
        answers: list[asyncio.Future[Result]] = []
        paid_here: list[bool] = []  # whether this record's result counts the chunk's tokens
        for chunk_input in item.inputs:
            key = chunk_input.key
            known = item.known.get(key)
            if known is not None:
                answer: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
                answer.set_result(known)
                answers.append(answer)
                paid_here.append(False)
            elif key in self._pending:
                # Shielded: this record's end (a cancelled sync) must not cancel another's request.
                answers.append(asyncio.shield(self._pending[key]))
                paid_here.append(False)
            else:
                request = self._delivery.submit(chunk_input)
                self._pending[key] = request
                request.add_done_callback(lambda done, k=key: self._settled(k, done))
                answers.append(request)
                paid_here.append(True)
        return asyncio.ensure_future(self._joined(item, answers, paid_here))

    async def run(self, item: ChunkedInput) -> Result:
        return await self.submit(item)

    def flush(self) -> None:
        self._delivery.flush()

    def from_cache(self, item: ChunkedInput, result: Result) -> Result:
        """A cached answer with the record's chunks put back: the cache keeps each chunk's vector under
        the chunk's key, and the record's key (made from those keys) says its chunks are these."""
        return replace(result, value=_chunk_values(item, [chunk["vector"] for chunk in result.value]))

    def _settled(self, key: str, request: asyncio.Future[Result]) -> None:
        if self._pending.get(key) is request:
            del self._pending[key]
        if request.cancelled() or request.exception() is not None or self.on_chunk_answer is None:
            return
        result = request.result()
        if result.ok or result.paid:
            self.on_chunk_answer(key, result)

    async def _joined(self, item: ChunkedInput, answers: list[asyncio.Future[Result]], paid_here: list[bool]) -> Result:
        """The record's result once every chunk is answered: all its chunks, or the first chunk's error
        (a record is stored with all its chunks or as an error row, never with some of them)."""
        results = await asyncio.gather(*answers)
        for chunk, result in zip(item.chunks, results, strict=True):
            if not result.ok:
                return Result(
                    model=result.model,
                    error=f"chunk {chunk.index + 1} of {len(item.chunks)}: {result.error}",
                    error_kind=result.error_kind,
                )
        return Result(
            value=_chunk_values(item, [result.value for result in results]),
            model=results[0].model,
            # Only the chunks this record paid for: a known or shared chunk's tokens are counted once.
            prompt_tokens=sum(r.prompt_tokens or 0 for r, paid in zip(results, paid_here, strict=True) if paid),
            completion_tokens=0,
            cached=not any(paid_here),
        )


def _chunk_values(item: ChunkedInput, vectors: list[Any]) -> list[dict[str, Any]]:
    """A record's result: each chunk with its cache key and vector, as the outputs write them."""
    return [
        {"index": chunk.index, "text": chunk.text, "tokens": chunk.tokens, "key": source.key, "vector": vector}
        for chunk, source, vector in zip(item.chunks, item.inputs, vectors, strict=True)
    ]
