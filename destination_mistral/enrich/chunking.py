"""Splits long texts into chunks for embedding, each within a token budget of the embedding model's own
tokenizer (tokens.py), with overlap between neighbours.

Structure first: the text is cut into pieces at the coarsest boundaries that bring each under the
budget (chunk_pieces.py: markdown headings, paragraphs, lines, sentences, words, and tokens inside a
run with none of these). Neighbouring pieces are merged into chunks of up to max_tokens, and each chunk
after the first starts with about overlap_tokens of the previous chunk's end, cut at a sentence or else
a word boundary.

Every chunk is counted whole with the model's tokenizer before it is returned: counts do not add up
(the count of "a b" is not the count of "a" plus that of "b", by a token or two either way), so sums
only guide the merge and the recount decides. A chunk is the source text between two offsets with its
surrounding whitespace stripped, so chunks come in the text's order and together hold every non-blank
character of it; a text that is empty or only whitespace has no chunks. With a counter that counts
spans of one text (tokens.WordCounts.spans, for tokenizers that cut at spaces), a count costs a
bisection instead of a pass over the span.

Why not a library: tools/bench_splitters.py measured langchain-text-splitters and semantic-text-splitter
with the Mistral tokenizers (bench-results/splitters.json). LangChain's recursive splitter adds up the
counts of its pieces and so returns chunks over the bound (513 tokens of 512 with codestral-embed's
tokenizer), its markdown header splitter rewrites line breaks (the chunks are no longer the source's
text), and it brings langchain-core and 20 other distributions. semantic-text-splitter holds the bound
exactly, but measures its candidates through the callback by binary search, tokenizing about seven
times each document's length: 21 ms of CPU per 4,000-token document with mistral-embed's tokenizer,
when this module takes under 1 ms and the destination's budget for splitting is a small share of a
sync's CPU. Chunk.tokens is the count an embedding input needs (EmbeddingInput's tokens), so the
batches need not count the chunks again."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from destination_mistral.enrich.chunk_pieces import SENTENCE, WORD, Pieces, SplitOn, strip

# A text this many characters per token of budget or shorter is counted whole first, since it most
# likely fits (a record's field usually does) and then one count is all it costs. Only speed rides on it.
_WHOLE_FIRST_CHARS_PER_TOKEN = 16
# A merged chunk whose count is over the budget by more than max_tokens // _FAR_OVER drops pieces
# in proportion before it is counted again (_merge).
_FAR_OVER = 16
# An overlap whose first guess falls in a word with no space within this many characters starts
# between two characters (CJK text, a giant word) instead of at the next word.
_NO_SPACE_WITHIN = 32


class _Counts(Protocol):
    def count(self, text: str) -> int: ...

    def count_many(self, texts: list[str]) -> list[int]: ...


class Chunk(NamedTuple):
    """One chunk: its position among the text's chunks, its text and that text's token count by the
    splitter's tokenizer. start and end are its character offsets in the source: text == source[start:end].
    (A named tuple: made about five times faster than a frozen dataclass, and a text makes dozens.)"""

    index: int
    text: str
    tokens: int
    start: int
    end: int


class Chunker:
    """Splits texts into chunks of at most max_tokens, counted by count_tokens (a function of a text,
    or a tokenizer with .count, such as tokens.tokenizer_for(model)), overlapping by about overlap_tokens.
    Stateless between calls: one Chunker serves every record of a stream, from any thread its counter
    allows."""

    def __init__(
        self,
        count_tokens: Callable[[str], int] | _Counts,
        max_tokens: int,
        overlap_tokens: int = 0,
        split_on: SplitOn = "text",
    ) -> None:
        count = getattr(count_tokens, "count", None)
        if callable(count):
            self._count: Callable[[str], int] = count
        elif callable(count_tokens):
            self._count = count_tokens
        else:
            raise ValueError("count_tokens: expected a function of a text or a tokenizer with .count(text)")
        count_many = getattr(count_tokens, "count_many", None)
        self._count_many: Callable[[list[str]], list[int]] = (
            count_many if callable(count_many) else lambda texts: [self._count(text) for text in texts]
        )
        # A counter of many spans of one text (tokens.WordCounts.spans), when the counter has one.
        self._spans: Callable[[str], Callable[[int, int], int]] | None = getattr(count_tokens, "spans", None)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens: expected an integer of at least 1, got {max_tokens!r}")
        if isinstance(overlap_tokens, bool) or not isinstance(overlap_tokens, int) or overlap_tokens < 0:
            raise ValueError(f"overlap_tokens: expected an integer of at least 0, got {overlap_tokens!r}")
        if overlap_tokens >= max_tokens:
            raise ValueError(f"overlap_tokens: must be less than max_tokens ({max_tokens}), got {overlap_tokens}")
        if split_on not in ("text", "markdown"):
            raise ValueError(f"split_on: expected 'text' or 'markdown', got {split_on!r}")
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.split_on: SplitOn = split_on

    @classmethod
    def for_model(cls, model: str, max_tokens: int, overlap_tokens: int = 0, split_on: SplitOn = "text") -> Chunker:
        """A chunker counting with `model`'s tokenizer, as the embedding batches do."""
        from destination_mistral.enrich.tokens import chunk_counter

        return cls(chunk_counter(model), max_tokens, overlap_tokens, split_on)

    def split(self, text: str) -> list[Chunk]:
        return _Split(self, text).run()


class _Split:
    """The state of one split: the text, its counter and the chunks so far."""

    def __init__(self, chunker: Chunker, text: str) -> None:
        self.text = text
        self.count_many = chunker._count_many
        self.spans = chunker._spans
        count = chunker._count
        self.count: Callable[[int, int], int] = lambda x, y: count(text[x:y])  # text[x:y]'s tokens
        self.max = chunker.max_tokens
        self.overlap = chunker.overlap_tokens
        self.split_on = chunker.split_on

    def run(self) -> list[Chunk]:
        text = self.text
        a, b = strip(text, 0, len(text))
        if a == b:
            return []
        if b - a <= self.max * _WHOLE_FIRST_CHARS_PER_TOKEN:
            tokens = self.count(a, b)
            if tokens <= self.max:
                return [Chunk(0, text[a:b], tokens, a, b)]
        if self.spans is not None:
            self.count = self.spans(text)
        return self._merge(Pieces(text, self.count, self.count_many, self.max, self.split_on).within(a, b))

    def _merge(self, pieces: list[tuple[int, int, int]]) -> list[Chunk]:
        text, chunks = self.text, []
        i = 0
        while i < len(pieces):
            start, overlap = pieces[i][0], 0
            # No overlap is sought when the first new piece leaves room for less than half of one:
            # the tail found would most often not fit, and seeking it costs counts (in a long run
            # cut by tokens, every piece fills a chunk).
            if chunks and self.overlap and (self.max - pieces[i][2]) * 2 >= self.overlap:
                start, overlap = self._overlap_start(chunks[-1], pieces[i][0])
            budget = self.max - overlap
            if pieces[i][2] > budget:  # the first new piece needs the room the overlap would take
                start, budget = pieces[i][0], self.max
            j, total = i, 0
            while j < len(pieces) and total + pieces[j][2] <= budget:
                total += pieces[j][2]
                j += 1
            while True:
                end = pieces[j - 1][1]
                # One piece alone was counted as it stands; more text is counted whole, since counts
                # do not add up.
                tokens = pieces[i][2] if j - 1 == i and start == pieces[i][0] else self.count(start, end)
                if tokens <= self.max:
                    break
                if j - 1 > i:
                    j -= 1
                    total -= pieces[j][2]
                    if tokens - self.max > self.max // _FAR_OVER:
                        # Far over (the pieces' sums undercount, as lines of one word do: each is
                        # counted with the space mark it lacks after a line break): drop pieces by
                        # the share the count is over, not one a recount, which costs a pass each.
                        keep = total * self.max // tokens
                        while j - 1 > i and total > keep:
                            j -= 1
                            total -= pieces[j][2]
                elif start != pieces[i][0]:  # the new piece alone fits (it was counted so): drop the overlap
                    start = pieces[i][0]
                else:  # only a counter that is not a function of the text gets here
                    raise RuntimeError(f"the token count of one text changed between two counts: {tokens}")
            chunks.append(Chunk(len(chunks), text[start:end], tokens, start, end))
            i = j
        return chunks

    def _overlap_start(self, previous: Chunk, next_start: int) -> tuple[int, int]:
        """Where the next chunk starts within the previous chunk so that it repeats about overlap
        tokens of it, and how many it repeats: at a word start (any character in text without spaces),
        moved on to a sentence start when that keeps at least half of it. (next_start, 0) when no tail
        fits.

        The first guess comes from the previous chunk's characters per token, so that one count of
        about overlap tokens usually settles it; each miss moves on by the excess."""
        text, a, b = self.text, previous.start, previous.end
        chars_per_token = (b - a) / max(1, previous.tokens)
        guess = b - int(self.overlap * chars_per_token)
        for _ in range(8):
            start = self._word_start(max(guess, a + 1), b)
            if start >= b:
                return next_start, 0
            tokens = self.count(start, b)
            if tokens <= self.overlap:
                break
            guess = start + max(1, int((tokens - self.overlap) * chars_per_token))
        else:
            return next_start, 0
        # The first sentence end after start, if before b: a later match would end later.
        first = SENTENCE.search(text, start, b)
        sentence = first.end() if first is not None and first.end() < b else None
        if sentence is not None and (b - sentence) * 2 >= b - start:
            return sentence, self.count(sentence, b)
        return start, tokens

    def _word_start(self, at: int, b: int) -> int:
        """The first word start at or after `at` (before b), or `at` itself in text without spaces."""
        if at >= b:
            return b
        if not self.text[at - 1].isspace() and not self.text[at].isspace():
            space = WORD.search(self.text, at, b)
            if space is None or space.start() - at > _NO_SPACE_WITHIN:
                return at  # no space near: CJK text or a giant word, cut between characters
            return space.end()
        match = WORD.match(self.text, at, b)
        return match.end() if match else at
