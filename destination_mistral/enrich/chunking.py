"""Splits long texts into chunks for embedding, each within a token budget of the embedding model's own
tokenizer (tokens.py), with overlap between neighbours.

Structure first: markdown headings (with split_on="markdown", outside code fences, level 1 before 2 and
so on), then paragraphs, lines, sentences and words; a run with none of these (a giant word, CJK text
without spaces) is cut by tokens, at the longest prefix that fits. Neighbouring pieces are merged into
chunks of up to max_tokens, and each chunk after the first starts with about overlap_tokens of the
previous chunk's end, cut at a sentence or else a word boundary.

Every chunk is counted whole with the model's tokenizer before it is returned: counts do not add up
(the count of "a b" is not the count of "a" plus that of "b", by a token or two either way), so sums
only guide the merge and the recount decides. A chunk is the source text between two offsets with its
surrounding whitespace stripped, so chunks come in the text's order and together hold every non-blank
character of it; a text that is empty or only whitespace has no chunks.

Why not a library: tools/bench_splitters.py measured langchain-text-splitters and semantic-text-splitter
with the Mistral tokenizers (bench-results/splitters.json). LangChain's recursive splitter adds up the
counts of its pieces and so returns chunks over the bound (513 tokens of 512 with codestral-embed's
tokenizer), its markdown header splitter rewrites line breaks (the chunks are no longer the source's
text), and it brings langchain-core and 20 other distributions. semantic-text-splitter holds the bound
exactly, but measures its candidates through the callback by binary search, tokenizing about seven
times each document's length: 32 ms of CPU per 4,000-token document with mistral-embed's tokenizer
against this module's 14 ms (two tokenizer passes and a little; a pass costs 6 ms), when the
destination's budget for splitting is a small share of a sync's CPU. Chunk.tokens is the count an
embedding input needs (EmbeddingInput's tokens), so the batches need not count the chunks again."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

SplitOn = Literal["text", "markdown"]

# Boundaries, coarsest first: a new piece starts at the end of each match.
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_LINE = re.compile(r"\n\s*")
# After sentence punctuation (and a closing quote or bracket) followed by space; after CJK full stops
# without space, since CJK text has none.
_SENTENCE = re.compile(r"(?<=[.!?;…])[\"'”’)\]]*\s+|(?<=[。！？；])\s*")
_WORD = re.compile(r"\s+")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~).*?(?:^[ \t]{0,3}\1[^\n]*$|\Z)", re.M | re.S)
_HEADINGS = [re.compile(rf"^(?=#{{1,{level}}}[ \t])", re.M) for level in range(1, 7)]

# A text this many characters per token of budget or shorter is counted whole first, since it most
# likely fits (a record's field usually does) and then one count is all it costs. Only speed rides on it.
_WHOLE_FIRST_CHARS_PER_TOKEN = 16
# An overlap whose first guess falls in a word with no space within this many characters starts
# between two characters (CJK text, a giant word) instead of at the next word.
_NO_SPACE_WITHIN = 32


class _Counts(Protocol):
    def count(self, text: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk: its position among the text's chunks, its text and that text's token count by the
    splitter's tokenizer. start and end are its character offsets in the source: text == source[start:end]."""

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
    """The state of one split: the text and where its fenced code blocks are."""

    def __init__(self, chunker: Chunker, text: str) -> None:
        self.text = text
        self.count = chunker._count
        self.max = chunker.max_tokens
        self.overlap = chunker.overlap_tokens
        self.levels: list[re.Pattern[str] | None] = [_PARAGRAPH, _LINE, _SENTENCE, _WORD]
        self.fences: list[tuple[int, int]] = []
        if chunker.split_on == "markdown":
            self.levels = [*_HEADINGS, *self.levels]
            self.fences = [m.span() for m in _FENCE.finditer(text)]

    def run(self) -> list[Chunk]:
        text = self.text
        a, b = _strip(text, 0, len(text))
        if a == b:
            return []
        if b - a <= self.max * _WHOLE_FIRST_CHARS_PER_TOKEN:
            tokens = self.count(text[a:b])
            if tokens <= self.max:
                return [Chunk(0, text[a:b], tokens, a, b)]
        return self._merge(self._pieces(a, b, 0))

    # --- pieces: spans of at most max tokens each, in order, covering every non-blank character ------------

    def _cuts(self, pattern: re.Pattern[str], a: int, b: int) -> list[int]:
        cuts = [m.end() for m in pattern.finditer(self.text, a, b) if a < m.end() < b]
        if self.fences and pattern in _HEADINGS:
            cuts = [cut for cut in cuts if not any(start < cut < end for start, end in self.fences)]
        return cuts

    def _pieces(self, a: int, b: int, level: int) -> list[tuple[int, int, int]]:
        """Spans (start, end, tokens) within text[a:b], which is known or likely to be over the budget."""
        for depth in range(level, len(self.levels)):
            cuts = self._cuts(self.levels[depth], a, b)
            if cuts:
                break
        else:
            return self._by_tokens(a, b)
        pieces: list[tuple[int, int, int]] = []
        for x, y in zip([a, *cuts], [*cuts, b], strict=True):
            x, y = _strip(self.text, x, y)
            if x == y:
                continue
            tokens = self.count(self.text[x:y])
            if tokens <= self.max:
                pieces.append((x, y, tokens))
            else:
                pieces += self._pieces(x, y, depth + 1)
        return pieces

    def _by_tokens(self, a: int, b: int) -> list[tuple[int, int, int]]:
        """Cuts a span without boundaries at the longest prefixes that fit (found by stepping to where
        the run's characters per token put the budget's end, then bisecting, so a long run costs a
        few counts of about a chunk's length per chunk)."""
        pieces: list[tuple[int, int, int]] = []
        x = a
        while x < b:
            fits, fits_tokens, over = x, 0, None
            step = max(1, self.max)  # characters: most tokens hold one or more
            while over is None:
                y = min(b, x + step)
                tokens = self.count(self.text[x:y])
                if tokens <= self.max:
                    fits, fits_tokens = y, tokens
                    if y == b:
                        break
                    # Next, where this run's characters per token put the budget's end (a little past
                    # it, so that the bisection below starts from a span that is over).
                    step = max(step + 1, (y - x) * (self.max + 1) // max(tokens, 1) + 1)
                else:
                    over = y
            if over is not None:
                lo, hi = fits, over  # text[x:lo] fits (or lo == x), text[x:hi] does not
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    tokens = self.count(self.text[x:mid])
                    if tokens <= self.max:
                        lo, fits_tokens = mid, tokens
                    else:
                        hi = mid
                fits = lo
            if fits == x:
                raise ValueError(
                    f"max_tokens: {self.max} is fewer than the tokens of the single character {self.text[x]!r}"
                )
            # Whitespace at the cut stays out of both sides, as at any other boundary.
            start, end = _strip(self.text, x, fits)
            if (start, end) != (x, fits):
                fits_tokens = self.count(self.text[start:end]) if start < end else 0
            if start < end:
                pieces.append((start, end, fits_tokens))
            x = fits
        return pieces

    # --- merging pieces into chunks ---------------------------------------------------------------------------

    def _merge(self, pieces: list[tuple[int, int, int]]) -> list[Chunk]:
        text, chunks = self.text, []
        i = 0
        while i < len(pieces):
            start, overlap = pieces[i][0], 0
            if chunks and self.overlap:
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
                tokens = self.count(text[start:end])
                if tokens <= self.max:
                    break
                if j - 1 > i:
                    j -= 1
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
            tokens = self.count(text[start:b])
            if tokens <= self.overlap:
                break
            guess = start + max(1, int((tokens - self.overlap) * chars_per_token))
        else:
            return next_start, 0
        sentence = next((m.end() for m in _SENTENCE.finditer(text, start, b) if start < m.end() < b), None)
        if sentence is not None and (b - sentence) * 2 >= b - start:
            return sentence, self.count(text[sentence:b])
        return start, tokens

    def _word_start(self, at: int, b: int) -> int:
        """The first word start at or after `at` (before b), or `at` itself in text without spaces."""
        if at >= b:
            return b
        if not self.text[at - 1].isspace() and not self.text[at].isspace():
            space = _WORD.search(self.text, at, b)
            if space is None or space.start() - at > _NO_SPACE_WITHIN:
                return at  # no space near: CJK text or a giant word, cut between characters
            return space.end()
        match = _WORD.match(self.text, at, b)
        return match.end() if match else at


def _strip(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b
