"""A cheap, deterministic token count. It models usage and latency, not Mistral's real tokenizer:
roughly one token per 4-letter chunk of a word and one per punctuation mark, which lands near the
~1.3 tokens per English word real tokenizers give."""

from __future__ import annotations

import re

_TOKEN_RE = re.compile(r"\w{1,4}|[^\w\s]")
_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def split_tokens(text: str) -> list[str]:
    """Pieces whose concatenation (with the original whitespace kept on the piece that follows it)
    rebuilds the text, so truncating to N tokens and streaming token by token stay consistent."""
    pieces: list[str] = []
    pos = 0
    for match in _TOKEN_RE.finditer(text):
        pieces.append(text[pos : match.end()])
        pos = match.end()
    if pos < len(text) and pieces:
        pieces[-1] += text[pos:]
    elif pos < len(text):
        pieces.append(text[pos:])
    return pieces


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(text)]
