"""Token counts by remembered words, for tokenizers that cut a text at every space before they merge
pieces (tokens._splits_at_spaces: mistral-embed's SentencePiece model). Splitting a long document into
chunks counts the same words again and again (every piece, every merged chunk, every overlap), and
natural text repeats few words, so each word is tokenized once and its count remembered; a span of a
document is then counted from running sums over the document's words.

Exact, not an estimate: property tests hold every count here to the tokenizer's own."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable
from itertools import repeat
from typing import TYPE_CHECKING

import numpy

if TYPE_CHECKING:
    from destination_mistral.enrich.tokens import Tokenizer

# SentencePiece's own mark for a space: in a text, it joins the space marks around it, so a text
# holding one is not the sum of its words.
_MARK = "\u2581"
_MARK_CODE = ord(_MARK)

# A word this long or shorter is remembered. Longer ones are runs without spaces (base64, CJK text, a
# document's paragraphs glued by line breaks), each met once and cut into parts that are new each
# time: counted when asked, not kept.
_REMEMBERED = 64

_ZEROS = bytes.maketrans(b"123456789", b"000000000")


class WordCounts:
    """Counts a text as the sum of its space-separated words' counts. A text with two spaces in a row,
    a space at either end, or a "▁", is counted whole by the tokenizer."""

    # Past this many remembered words the memory is cleared (a word costs ~100 bytes).
    MAX_WORDS = 200_000

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        # Many new words counted at once (tokens._MistralCommonTokenizer.count_words), else a list.
        self._count_words: Callable[[list[str]], list[int]] = getattr(tokenizer, "count_words", tokenizer.count_many)
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        # Rules of the tokenizer's vocabulary that count a new word from remembered parts (_count_new).
        self._zeros: bool = getattr(tokenizer, "digits_alone", False)
        self._lines: bool = getattr(tokenizer, "lines_alone", False)

    def count(self, text: str) -> int:
        if not text or "  " in text or text[0] == " " or text[-1] == " " or _MARK in text:
            return self._tokenizer.count(text)
        return sum(self.count_many(text.split(" ")))

    def count_many(self, texts: list[str]) -> list[int]:
        """Counts of many texts; a list of known words (a run of words split apart) costs one
        dictionary lookup each, in C, instead of a call of `count` each."""
        counts = self._word_counts(texts)
        if None not in counts:
            return counts  # type: ignore[return-value]
        result = []
        for text, known in zip(texts, counts, strict=True):
            if known is None:  # a long word, or a text of several words
                known = self.count(text) if " " in text else self._tokenizer.count(text)
            result.append(known)
        return result

    def spans(self, text: str) -> Callable[[int, int], int]:
        """The count of text[x:y] for any x < y, from running sums over `text`'s words: a span's
        words are the whole words between its ends plus a part of a word at either end, so a few
        lookups count it, where counting the span's text costs a pass over it.
        A chunker counts thousands of spans of one document (every piece, chunk and overlap).

        When every line break is a token alone (tokens.lines_alone), a line break also starts a word:
        "end.\n\nNext" is the words "end.", "\n" and "\nNext", each but the first counted less the
        "▁" it starts with alone. The words that a document glues by line breaks (one at each
        paragraph's end) are then words the memory has seen, not new ones to count from their
        parts one by one in Python (_count_new)."""
        lines = self._lines and "\n" in text
        words = (text.replace("\n", " \n") if lines else text).split(" ")
        # Where the words end: word k ends at ends[k], a space or a line break (which starts word
        # k + 1), or the text's end; found by numpy in C (a running sum of word lengths costs ~3 times
        # as much). During each pass over an array, numpy lets the sync's other threads take the
        # interpreter, and the splitter then waits for it and finds its memory evicted: so a text
        # costs four such passes here, the line breaks (a few per paragraph) are set one by one, and
        # the counts are held as bytes.
        codes = (
            numpy.frombuffer(text.encode("ascii"), dtype=numpy.uint8)
            if text.isascii()
            else numpy.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=numpy.uint32)
        )
        at_bound = numpy.empty(len(text) + 1, dtype=bool)
        numpy.equal(codes, 32, out=at_bound[:-1])
        at_bound[-1] = True
        breaks_at = _positions(text, "\n") if lines else []
        at_bound[breaks_at] = True
        ends = memoryview(numpy.flatnonzero(at_bound))
        # The word holding each character (the number of word ends at or before it), so that a span
        # finds its end words by two lookups: a list of the ends to bisect instead costs ~3 times as
        # much to make (a Python integer per word) and ~5 times as much to search (a split looks up
        # about 150 positions).
        word_at = memoryview(numpy.cumsum(at_bound[:-1], dtype=numpy.intc))
        # The remembered counts, as bytes (bytearray takes small integers in C at ~60% of
        # numpy.fromiter's cost): 255 stands for a word not remembered, found below, and then for a
        # long word, whose count is not in the bytes but in long_counts.
        try:
            counts = bytearray(map(self._counts.get, words, repeat(255)))
        except ValueError:  # a remembered word of over 255 tokens (64 characters of 4 UTF-8 bytes each)
            counts = bytearray(map(min, map(self._counts.get, words, repeat(255)), repeat(255)))
        # A word after a line break counts less the "▁" it starts with alone (lines_alone).
        after_breaks = list(map(word_at.__getitem__, breaks_at))
        breaks = bytearray(len(words))
        for k in after_breaks:
            breaks[k] = 1
        long_counts: dict[int, int] = {}
        hazards: list[int] = []
        missing = _positions(counts, 255)
        if missing:
            # Most are numbers, found by their keys (_count_new); the rest, empty and long words,
            # are rare enough to take one by one.
            missing_words = list(map(words.__getitem__, missing))
            new = self._count_new(words, missing) if any(missing_words) else {}
            for i, word, known in zip(missing, missing_words, map(new.get, missing_words, repeat(-1)), strict=True):
                if known >= 255:
                    long_counts[i] = known
                elif known >= 0:
                    counts[i] = known
                elif not word:
                    # An empty word lies between a space and the next space or line break (or an
                    # end). Before a line break, the space is a "▁" alone: 1. Two spaces in a row
                    # may be one piece ("▁▁"): a span holding the second is counted by the
                    # tokenizer (a hazard), as is one holding a "▁".
                    benign = i + 1 < len(words) and breaks[i + 1]
                    counts[i] = 1 if benign else 0
                    if not benign and i + 1 < len(words):
                        hazards.append(ends[i])
        if _MARK in text:
            hazards = sorted(hazards + numpy.flatnonzero(codes == _MARK_CODE).tolist())
        # Long words (255 in `counts`) are counted only if a span holds one whole (most are cut
        # inside): 0 in the sums until then, and added on their own.
        longs = _positions(counts, 255)
        inner = counts.translate(_LONG_AS_NONE)
        for k in after_breaks:
            if inner[k]:
                inner[k] -= 1
        sums = numpy.zeros(len(words) + 1, dtype=numpy.int64)
        numpy.cumsum(numpy.frombuffer(inner, dtype=numpy.uint8), dtype=numpy.int64, out=sums[1:])
        sums = memoryview(sums)
        long_parts: dict[tuple[int, int], int] = {}
        get, tokenizer = self._counts.get, self._tokenizer

        def start_of(k: int) -> int:
            """Where word k starts: after the space before it, or at the line break that starts it."""
            return ends[k - 1] + 1 - breaks[k] if k else 0

        def whole_long(k: int) -> int:
            if k not in long_counts:
                long_counts[k] = tokenizer.count(text[start_of(k) : ends[k]])
            return long_counts[k]

        def part(k: int, x: int, y: int) -> int:
            """The count of text[x:y], which lies within word k."""
            if y == ends[k] and x == start_of(k):
                return whole_long(k) if counts[k] == 255 else counts[k]
            if y - x > _REMEMBERED:
                # A long word's part, such as a run without spaces cut by lines: the chunker asks for
                # the same one again (a piece, then its group of words), and each count is a pass.
                known = long_parts.get((x, y))
                if known is None:
                    known = long_parts[(x, y)] = tokenizer.count(text[x:y])
                return known
            known = get(text[x:y], -1)  # a single word: no space in it
            return self.count_many([text[x:y]])[0] if known < 0 else known

        def span(x: int, y: int) -> int:
            if text[x] == " " or text[y - 1] == " ":
                return tokenizer.count(text[x:y])  # what count() leaves to the tokenizer
            if hazards:
                h = bisect_left(hazards, x)
                if h < len(hazards) and hazards[h] < y:
                    return tokenizer.count(text[x:y])
            i, j = word_at[x], word_at[y - 1]
            if i == j:
                return part(i, x, y)
            # The words at the ends, whole or in part: a piece most often starts and ends at a
            # word's ends, and else its parts are remembered words (255: a long word's, or none).
            left = counts[i] if x == start_of(i) else get(text[x : ends[i]], -1)
            if left < 0 or left == 255:
                left = part(i, x, ends[i])
            start = start_of(j)
            right = counts[j] if y == ends[j] else get(text[start:y], -1)
            if right < 0 or right == 255:
                right = part(j, start, y)
            total = left + sums[j] - sums[i + 1] + right - breaks[j]
            if longs:
                for k in range(bisect_left(longs, i + 1), bisect_left(longs, j)):
                    total += whole_long(longs[k]) - breaks[longs[k]]
            return total

        return span

    def _word_counts(self, words: list[str]) -> list[int | None]:
        """The counts of single words (no space in them), new ones tokenized together; None for a
        long word (over _REMEMBERED) not remembered, and for a text with a space."""
        return self._lookup(words)[0]

    def _lookup(self, words: list[str]) -> tuple[list[int | None], list[int]]:
        """_word_counts, and the positions of the words that were not remembered."""
        counts = list(map(self._counts.get, words))
        missing = _positions(counts, None)
        if missing:
            get = self._count_new(words, missing).get
            for i in missing:
                counts[i] = get(words[i])
        return counts, missing

    def _count_new(self, words: list[str], missing: list[int]) -> dict[str, int]:
        """The counts of the words at `missing` (not remembered as they stand), but for long words
        (over _REMEMBERED), empty ones and texts with a space.

        Each is counted by its key: its digits made 0 when every digit is a token of its own
        (tokens.digits_alone), and, when every line break is too (tokens.lines_alone), a word holding
        line breaks by its lines: the first line as a word, each later one with the line break before
        it, less the "▁" that such a text alone starts with. So the numbers and the words glued by
        line breaks that make most of a document's new words are counted from remembered parts, and
        the memory keeps the parts only: it stays small over a long sync."""
        # As a set, in C: a document's unknown words are dozens, each looked at once.
        unknown = [
            word for word in set(map(words.__getitem__, missing)) if 0 < len(word) <= _REMEMBERED and " " not in word
        ]
        if not unknown:
            return {}
        # Their keys made in one pass (no word holds a space), on the UTF-8 bytes: a bytes table
        # is ~20 times as fast as str.translate, and no byte of another character is an ASCII digit.
        joined = " ".join(unknown)
        if self._zeros:
            joined = joined.encode("utf-8", "surrogatepass").translate(_ZEROS).decode("utf-8", "surrogatepass")
        keys = joined.split(" ") if self._zeros else unknown
        # A word holding line breaks, with its lines, each after the first with the line break before it.
        glued: dict[str, list[str]] = {}
        if self._lines and "\n" in joined:
            pairs = list(zip(unknown, keys, strict=True))
            glued = {word: key.replace("\n", " \n").split(" ") for word, key in pairs if "\n" in key}
            unknown = [word for word, key in pairs if "\n" not in key]
            keys = [key for key in keys if "\n" not in key]
        needed = set(keys)
        for word, lines in glued.items():
            needed.update(lines)
            # A word holding a line break is several to a chunker that cuts there: counting its
            # parts now, with the rest, saves a call of the tokenizer for each later.
            needed.update(word.split())
        needed.discard("")
        with self._lock:
            known = self._counts
            new = needed.difference(known)
            if len(known) + len(new) >= self.MAX_WORDS:
                known.clear()
                new = needed
            if new:
                new_words = list(new)
                known.update(zip(new_words, self._count_words(new_words), strict=True))
            get = known.__getitem__
            found = dict(zip(unknown, map(get, keys), strict=True))
            for word, lines in glued.items():
                # A word starting with a line break has no first line: the "▁" it starts with is a
                # token alone, as each later line's count has one, which the sum takes away.
                first = get(lines[0]) if lines[0] else 1
                found[word] = first + sum(map(get, lines[1:])) - (len(lines) - 1)
        return found


# Long words' 255 read as 0 (in the running sums of counts held as bytes).
_LONG_AS_NONE = bytes(range(255)) + b"\0"


def _positions(values: str | bytes | bytearray | list, value: object) -> list[int]:
    """Where `value` is in `values`, by index in C: a few among thousands, found ~4 times faster than
    by compressing a map over every value."""
    positions: list[int] = []
    at = -1
    try:
        while True:
            at = values.index(value, at + 1)  # type: ignore[arg-type]
            positions.append(at)
    except ValueError:
        return positions
