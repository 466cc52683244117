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
        # Where the words end, found by numpy in C (a running sum of word lengths costs ~3 times as
        # much): word k ends at bounds[k], a space or a line break (the line break starts word k + 1).
        codes = (
            numpy.frombuffer(text.encode("ascii"), dtype=numpy.uint8)
            if text.isascii()
            else numpy.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=numpy.uint32)
        )
        at_space = codes == 32
        at_break = codes == 10 if lines else None
        at_bound = at_space | at_break if lines else at_space
        bounds = numpy.flatnonzero(at_bound)
        # Counts and running sums as machine integers, filled and summed by numpy in C. The counts are
        # first read as bytes, which bytearray takes from small integers at ~60% of numpy.fromiter's
        # cost: 255 stands for a word not remembered, or for one of exactly 255 tokens (64 characters
        # of four UTF-8 bytes each), both found by their keys below. A remembered count over 255,
        # which bytearray refuses, has the counts read again as integers.
        try:
            read = numpy.frombuffer(bytearray(map(self._counts.get, words, repeat(255))), dtype=numpy.uint8)
            missing = numpy.flatnonzero(read == 255).tolist()
            counts = read.astype(numpy.int64)
        except ValueError:
            counts = numpy.fromiter(map(self._counts.get, words, repeat(-1)), dtype=numpy.int64, count=len(words))
            missing = numpy.flatnonzero(counts < 0).tolist()
        # A word after a line break counts less the "▁" it starts with alone (lines_alone).
        after_break = numpy.zeros(len(words), dtype=numpy.int64)
        if lines:
            after_break[1:] = at_break[bounds]
        hazards: list[int] = []
        longs: list[int] = []
        if missing:
            # Most are numbers, found by their keys (_count_new); the rest, empty and long words,
            # are rare enough to take one by one.
            missing_words = list(map(words.__getitem__, missing))
            new = self._count_new(words, missing) if any(missing_words) else {}
            found = list(map(new.get, missing_words, repeat(-1)))
            counts[missing] = found
            if -1 in found:
                for i, word, known in zip(missing, missing_words, found, strict=True):
                    if known >= 0:
                        continue
                    if word:
                        longs.append(i)
                        continue
                    # An empty word lies between a space and the next space or line break (or an
                    # end). Before a line break, the space is a "▁" alone: 1. Two spaces in a row
                    # may be one piece ("▁▁"): a span holding the second is counted by the
                    # tokenizer (a hazard), as is one holding a "▁".
                    benign = lines and i + 1 < len(words) and after_break[i + 1]
                    counts[i] = 1 if benign else 0
                    if not benign and i < len(bounds):
                        hazards.append(int(bounds[i]))
        if _MARK in text:
            hazards = sorted(hazards + numpy.flatnonzero(codes == _MARK_CODE).tolist())
        # Long words (in `longs`) are counted only if a span holds one whole (most are cut inside):
        # 0 in the sums until then, and added on their own; -1 in `word_counts`.
        inner_counts = counts - after_break
        if longs:
            inner_counts[longs] = 0
        # Read by index through memory views: numpy makes them in C, and a view hands out each
        # value as a Python integer when asked instead of keeping one for each word.
        sums = numpy.zeros(len(words) + 1, dtype=numpy.int64)
        numpy.cumsum(inner_counts, out=sums[1:])
        # Where word k starts and ends: after the space before it, or at the line break that starts
        # it; at the space or line break after it, or the text's end.
        starts = numpy.zeros(len(words), dtype=numpy.int64)
        starts[1:] = bounds + 1
        starts -= after_break
        ends = numpy.append(bounds, len(text))
        # The word holding each character (the number of word ends at or before it), so that a span
        # finds its end words by two lookups: a list of the ends to bisect instead costs ~3 times as
        # much to make (a Python integer per word) and ~5 times as much to search (a split looks up
        # about 150 positions).
        word_at = numpy.cumsum(at_bound, dtype=numpy.intc)
        sums, starts, ends, word_at, word_counts, breaks = map(
            memoryview, (sums, starts, ends, word_at, counts, after_break)
        )
        long_counts: dict[int, int] = {}
        long_parts: dict[tuple[int, int], int] = {}
        get, tokenizer = self._counts.get, self._tokenizer

        def whole_long(k: int) -> int:
            if k not in long_counts:
                long_counts[k] = tokenizer.count(text[starts[k] : ends[k]])
            return long_counts[k]

        def part(k: int, x: int, y: int) -> int:
            """The count of text[x:y], which lies within word k."""
            if y == ends[k] and x == starts[k]:
                return whole_long(k) if word_counts[k] < 0 else word_counts[k]
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
            # word's ends, and else its parts are remembered words.
            left = word_counts[i] if x == starts[i] else get(text[x : ends[i]], -1)
            if left < 0:
                left = part(i, x, ends[i])
            start = starts[j]
            right = word_counts[j] if y == ends[j] else get(text[start:y], -1)
            if right < 0:
                right = part(j, start, y)
            inner = sums[j] - sums[i + 1]
            if longs:
                for k in range(bisect_left(longs, i + 1), bisect_left(longs, j)):
                    inner += whole_long(longs[k]) - breaks[longs[k]]
            return left + inner + right - breaks[j]

        return span

    def _word_counts(self, words: list[str]) -> list[int | None]:
        """The counts of single words (no space in them), new ones tokenized together; None for a
        long word (over _REMEMBERED) not remembered, and for a text with a space."""
        return self._lookup(words)[0]

    def _lookup(self, words: list[str]) -> tuple[list[int | None], list[int]]:
        """_word_counts, and the positions of the words that were not remembered."""
        counts = list(map(self._counts.get, words))
        missing = _positions_of_none(counts)
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


def _positions_of_none(values: list) -> list[int]:
    """Where None is in `values`, by list.index in C: a few among thousands, found ~4 times faster
    than by compressing a map over every value."""
    positions: list[int] = []
    try:
        while True:
            positions.append(values.index(None, positions[-1] + 1 if positions else 0))
    except ValueError:
        return positions
