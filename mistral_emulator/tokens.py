"""Token counts. What a limit decides on is counted by the model's own tokenizer (mistral-common, as
the real API does): an embedding input (8,192 tokens an input, 16,384 a request) and the messages of
a chat prompt (the model's context), so that a client that cuts its input to a limit with the
model's tokenizer is not refused. Everything else (answers, FIM, OCR, classifiers) gets a cheap,
deterministic count that models usage and latency: roughly one token per 4-letter chunk of a word
and one per punctuation mark, which lands near the ~1.3 tokens per English word real tokenizers
give, but counts long words at up to 2.6 times."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

_TOKEN_RE = re.compile(r"\w{1,4}|[^\w\s]")
_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def count_embedding_tokens(model: str, text: str) -> int:
    """The tokens of an embedding input to `model` (a model id) by its tokenizer: mistral-embed's
    SentencePiece vocabulary, or tekken for codestral-embed; the cheap count without mistral-common."""
    return _count("tekken" if "codestral" in model else "v1", text)


def count_prompt_tokens(text: str) -> int:
    """The tokens of a chat message's text by tekken, the tokenizer of every current chat model; the
    cheap count without mistral-common."""
    return _count("tekken", text)


def _count(family: str, text: str) -> int:
    tokenizer = _tokenizer(family)
    if tokenizer is None:
        return count_tokens(text)
    raw, lock = tokenizer
    with lock:  # the tokenizers are not documented thread-safe
        return len(raw.encode(text, bos=False, eos=False))


@lru_cache(maxsize=2)
def _tokenizer(family: str):
    try:
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    except ImportError:
        return None
    tokenizer = MistralTokenizer.v1() if family == "v1" else MistralTokenizer.v3(is_tekken=True)
    return tokenizer.instruct_tokenizer.tokenizer, threading.Lock()


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
