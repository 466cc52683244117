"""The pieces chunks are merged from (chunking.py): spans of a text of at most max_tokens each, in the
text's order, together holding every non-blank character of it, each cut at the coarsest boundary
that brings it under the budget: markdown headings (with split_on="markdown", outside code fences,
level 1 before 2 and so on), then paragraphs, lines, sentences and words; a run with none of these (a
giant word, CJK text without spaces) is cut by tokens."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

SplitOn = Literal["text", "markdown"]

# Boundaries, coarsest first: a new piece starts at the end of each match.
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_LINE = re.compile(r"\n\s*")
# After sentence punctuation (and a closing quote or bracket) followed by space; after CJK full stops
# without space, since CJK text has none. (Only a match's end is used. The pattern starts with one
# character class, which lets the scan skip to the next punctuation mark; the mark is then told apart
# by looking behind at it: three times as fast as two branches tried at every character, same matches.)
SENTENCE = re.compile(r"[.!?;…。！？；](?:(?<=[.!?;…])[\"'”’)\]]*\s+|(?<=[。！？；])\s*)")
WORD = re.compile(r"\s+")
_NOT_SPACE = re.compile(r"\S+")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~).*?(?:^[ \t]{0,3}\1[^\n]*$|\Z)", re.M | re.S)
# A markdown heading of a level or coarser, matched from its first "#", which must start a line (the
# character before it is a line break, or there is none): a new piece starts at the match's start. (A
# pattern that starts with "#" lets the scan skip to the next "#"; a line start asserted first is tried
# at every character, eight times as slow.)
_HEADINGS = [re.compile(rf"#(?<![^\n]#)#{{0,{level - 1}}}[ \t]") for level in range(1, 7)]

# A cut inside a run without boundaries is taken when it holds at least max_tokens - max_tokens // _SLACK
# tokens (94% of a chunk), which most often the first count finds, instead of searching on for the
# longest prefix: each count of a run is a pass of the tokenizer (97% took a fifth more counts).
_SLACK = 16
# A run of words is cut into groups of about max_tokens // _WORD_GROUP tokens, which the merge packs
# into chunks: a chunk ends at most a group short of the budget.
_WORD_GROUP = 16
# A run without whitespace longer than the first of these many characters per token of budget is
# counted by its heads first (_measure), shortest first: base64 and CJK text hold about a character
# and a quarter a token or less, so the shortest head most often settles it, at a fraction of the
# tokenizer's pass over the whole run.
_HEAD_CHARS_PER_TOKEN = (1.5, 4)


class Pieces:
    """The pieces of one text, counted by `count(x, y)` (the tokens of text[x:y]) and `count_many`
    (the tokens of each of many texts)."""

    def __init__(
        self,
        text: str,
        count: Callable[[int, int], int],
        count_many: Callable[[list[str]], list[int]],
        max_tokens: int,
        split_on: SplitOn,
    ) -> None:
        self.text, self.count, self.count_many, self.max = text, count, count_many, max_tokens
        self.levels: list[re.Pattern[str]] = [_PARAGRAPH, _LINE, SENTENCE, WORD]
        self.fences: list[tuple[int, int]] = []
        if split_on == "markdown":
            self.levels = [*_HEADINGS, *self.levels]
            # The pattern is tried at every character: a text without a fence's mark skips it.
            if "```" in text or "~~~" in text:
                self.fences = [m.span() for m in _FENCE.finditer(text)]

    def within(self, a: int, b: int) -> list[tuple[int, int, int]]:
        """Spans (start, end, tokens) within text[a:b] (stripped, and known or likely to be over the budget)."""
        return self._pieces(a, b, 0)

    def _cuts(self, pattern: re.Pattern[str], a: int, b: int) -> list[int]:
        if pattern not in _HEADINGS:
            return [end for m in pattern.finditer(self.text, a, b) if a < (end := m.end()) < b]
        cuts = [start for m in pattern.finditer(self.text, a, b) if a < (start := m.start()) < b]
        if self.fences:
            cuts = [cut for cut in cuts if not any(start < cut < end for start, end in self.fences)]
        return cuts

    def _pieces(self, a: int, b: int, level: int, tokens: int = 0) -> list[tuple[int, int, int]]:
        """Spans (start, end, tokens) within text[a:b], which is known or likely to be over the budget
        (`tokens`, its count or an estimate when known: only guesses ride on it)."""
        for depth in range(level, len(self.levels)):
            if self.levels[depth] is WORD:
                return self._words(a, b, tokens)
            cuts = self._cuts(self.levels[depth], a, b)
            if cuts:
                break
        else:
            return self._by_tokens(a, b, tokens)
        pieces: list[tuple[int, int, int]] = []
        for x, y in zip([a, *cuts], [*cuts, b], strict=True):
            x, y = strip(self.text, x, y)
            if x == y:
                continue
            tokens, exact = self._measure(x, y)
            if exact and tokens <= self.max:
                pieces.append((x, y, tokens))
            else:
                pieces += self._pieces(x, y, depth + 1, tokens)
        return pieces

    def _measure(self, x: int, y: int) -> tuple[int, bool]:
        """text[x:y]'s count and True; or, for a run without whitespace whose head alone is over the
        budget (_HEAD_CHARS_PER_TOKEN), an estimate from the head and False. Such a run (base64, CJK
        text) costs a pass of the tokenizer to count whole, and is then cut by tokens anyway; text
        with spaces is not measured so, since its head seldom settles it and a counter by words counts
        it whole as cheaply."""
        if y - x > self.max * _HEAD_CHARS_PER_TOKEN[0] and self._one_run(x, y):
            for chars in _HEAD_CHARS_PER_TOKEN:
                head = x + int(self.max * chars)
                if head >= y:
                    break
                head_tokens = self.count(x, head)
                if head_tokens > self.max:
                    return head_tokens * (y - x) // (head - x), False
        return self.count(x, y), True

    def _one_run(self, a: int, b: int) -> bool:
        """Whether text[a:b] holds no whitespace: a giant word, base64 or CJK text. (A space, which
        most text holds near its start, is found by str.find at a fraction of a regex search's cost.)"""
        return self.text.find(" ", a, b) < 0 and WORD.search(self.text, a, b) is None

    def _words(self, a: int, b: int, tokens: int) -> list[tuple[int, int, int]]:
        """Groups of words of text[a:b] of about max_tokens // _WORD_GROUP tokens each, cut at
        whitespace: a run of thousands of words without a sentence break (a flattened table) would
        cost a piece per word, here and in the merge. A group over the budget is taken word by word."""
        if self._one_run(a, b):  # a single word: cut by tokens, without a count of it whole
            return self._by_tokens(a, b, tokens)
        group = max(1, self.max // _WORD_GROUP)
        chars_per_token = (b - a) / tokens if tokens else 4.0
        pieces: list[tuple[int, int, int]] = []
        x = a
        while x < b:
            space = WORD.search(self.text, x + max(1, int(group * chars_per_token)), b)
            end, after = space.span() if space else (b, b)
            # The search may start inside a run of whitespace: the group ends where the run begins.
            end = strip(self.text, x, end)[1]
            count = self.count(x, end)
            if count > self.max:
                pieces += self._each_word(x, end, count)
            else:
                pieces.append((x, end, count))
                chars_per_token = (end - x) / max(count, 1)
            x = after
        return pieces

    def _each_word(self, a: int, b: int, tokens: int) -> list[tuple[int, int, int]]:
        """The words of text[a:b] (`tokens` in all) as pieces, counted in one call, and words over the
        budget cut by tokens. The same pieces as cutting at WORD and stripping."""
        spans = [m.span() for m in _NOT_SPACE.finditer(self.text, a, b)]
        if len(spans) == 1 and spans[0] == (a, b):
            return self._by_tokens(a, b, tokens)
        counts = self.count_many([self.text[x:y] for x, y in spans])
        pieces: list[tuple[int, int, int]] = []
        for (x, y), tokens in zip(spans, counts, strict=True):
            if tokens <= self.max:
                pieces.append((x, y, tokens))
            else:
                pieces += self._by_tokens(x, y, tokens)
        return pieces

    def _by_tokens(self, a: int, b: int, tokens: int) -> list[tuple[int, int, int]]:
        """Cuts a span without boundaries into prefixes that fit (_prefix), so a long run costs a few
        counts of about a chunk's length per chunk. `tokens`: the span's count, when known (0 if not),
        whose characters per token place the first cut."""
        pieces: list[tuple[int, int, int]] = []
        chars_per_token = (b - a) / tokens if tokens else 1.0  # a character a token, which most hold or more
        x = a
        while x < b:
            fits, fits_tokens = self._prefix(x, b, chars_per_token)
            if fits == x:
                raise ValueError(
                    f"max_tokens: {self.max} is fewer than the tokens of the single character {self.text[x]!r}"
                )
            # Whitespace at the cut stays out of both sides, as at any other boundary.
            start, end = strip(self.text, x, fits)
            if (start, end) != (x, fits):
                fits_tokens = self.count(start, end) if start < end else 0
            if start < end:
                pieces.append((start, end, fits_tokens))
            x = fits
        return pieces

    def _prefix(self, x: int, b: int, chars_per_token: float) -> tuple[int, int]:
        """The end of a prefix of text[x:b] that fits and its count (x when no character fits): all of
        it, or a prefix within _SLACK of the budget, or else the longest. Found by interpolating where
        the run's characters per token put the budget's end (a run's count grows about linearly with
        its length), bisecting when an interpolation gains less than half: two or three counts a chunk."""
        slack = self.max // _SLACK
        target = self.max - slack // 2  # aim inside the accepted range
        lo, lo_tokens, hi, hi_tokens = x, 0, b + 1, -1  # text[x:lo] fits; text[x:hi] does not (b + 1: unknown)
        y, width = min(b, x + max(1, int(target * chars_per_token))), b + 1 - x
        while True:
            tokens = self.count(x, y)
            if tokens <= self.max:
                lo, lo_tokens = y, tokens
                if y == b or tokens >= self.max - slack:
                    return lo, lo_tokens
            else:
                hi, hi_tokens = y, tokens
            if hi - lo <= 1:
                return lo, lo_tokens
            if hi_tokens < 0:  # nothing over yet: on to where the characters per token so far put the target
                y = min(b, max(lo + 1, x + (lo - x) * target // max(lo_tokens, 1)))
                continue
            if (hi - lo) * 2 > width:
                y = (lo + hi) // 2
            else:
                y = lo + (target - lo_tokens) * (hi - lo) // max(1, hi_tokens - lo_tokens)
            y, width = min(hi - 1, max(lo + 1, y)), hi - lo


def strip(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b
