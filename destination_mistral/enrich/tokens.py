"""Token counts from Mistral's own tokenizers, bundled with mistral-common (no network).

Counts size embedding batches and catch over-long inputs before they are paid for. Models change
faster than mistral-common's table, so an unknown model gets the closest tokenizer family, and the
batcher keeps a safety margin; when the server still disagrees, the batch is split (batching.py)."""

from __future__ import annotations

import re
import threading
from functools import cached_property, lru_cache
from itertools import compress, count
from operator import sub
from typing import Protocol

from destination_mistral.enrich.word_counts import WordCounts

_DIGIT = re.compile("[0-9]")


class Tokenizer(Protocol):
    def count(self, text: str) -> int: ...

    def count_many(self, texts: list[str]) -> list[int]: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...

    @property
    def splits_at_spaces(self) -> bool:
        """Whether a text's count is the sum of its space-separated words' (WordCounts)."""
        ...


def _bounded_by_bytes(raw) -> bool:
    """Whether no text encodes to more tokens than its UTF-8 bytes plus one: true of byte-level BPE
    (tekken) and of SentencePiece models that do not normalise (their byte fallback spends at most
    one token per byte, plus the dummy prefix). NFKC normalisation can expand a character many times."""
    if type(raw).__name__ == "Tekkenizer":
        return True
    try:
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        # The model file is the serialised proto; mistral-common's processor is private (`_model`).
        proto.ParseFromString(raw.file_path.read_bytes())
        return proto.normalizer_spec.name == "identity" and proto.trainer_spec.byte_fallback
    except Exception:  # another tokenizer, or no protobuf: always count
        return False


class _MistralCommonTokenizer:
    def __init__(self, raw) -> None:
        self._raw = raw
        self._lock = threading.Lock()  # sentencepiece and tiktoken objects are not documented thread-safe

    def encode(self, text: str) -> list[int]:
        with self._lock:
            return self._raw.encode(text, bos=False, eos=False)

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def count_many(self, texts: list[str]) -> list[int]:
        """Counts of many texts in one call. SentencePiece encodes a list in C++ without holding
        the GIL (a text at a time, it holds it), so counting on a worker thread this way runs beside
        the event loop instead of taking ~25 us of its time per record."""
        if type(self._raw).__name__ == "SentencePieceTokenizer":
            with self._lock:
                return [len(ids) for ids in self._processor.encode(list(texts), num_threads=1)]
        return [self.count(text) for text in texts]

    def count_words(self, words: list[str]) -> list[int]:
        """Counts of many single words (no space in them) for a tokenizer that splits at spaces: the
        words joined by spaces are encoded once, and each word's count is the run of pieces from one
        piece that starts a word ("▁...") to the next. One encode of the joined text costs ~0.5 us a
        word, a list encode ~1.5 (it starts a thread) and a call a word ~3. A word holding "▁" itself
        is counted alone."""
        if not self.splits_at_spaces or not words:
            return self.count_many(words)
        text = " ".join(words)
        # Checked on the joined text, in C: a "▁", a space inside a word, or an empty word (two
        # spaces in a row, or one at an end) is rare, and found so without a test of each word.
        if not text or "▁" in text or "  " in text or " " in (text[0], text[-1]) or text.count(" ") >= len(words):
            alone = [i for i, word in enumerate(words) if "▁" in word or " " in word or not word]
            joined = [word for word in words if "▁" not in word and " " not in word and word]
            text = " ".join(joined)
        else:
            alone, joined = [], words
        with self._lock:
            ids = self._processor.encode(text)
        # In C over the ids, without numpy: numpy lets other threads take the interpreter during
        # its loops, and a sync's other threads then evict what the splitter had in cache.
        starts = list(compress(count(), map(self._starts_word.__getitem__, ids)))
        if len(starts) != len(joined):  # not the shape this rule expects: count each word
            return self.count_many(words)
        starts.append(len(ids))
        counts = list(map(sub, starts[1:], starts))
        for i in alone:
            counts.insert(i, self.count(words[i]))
        return counts

    @cached_property
    def _starts_word(self) -> bytes:
        """For each piece id, whether the piece starts a word (begins with "▁", SentencePiece's space)."""
        return bytes(piece.startswith("▁") for piece in self._pieces)

    @cached_property
    def _processor(self):
        """A SentencePiece processor of the same model, for the list encode mistral-common does not
        offer: its own processor is private (`_model`), the model file it loaded is public, and
        loading it again takes ~10 ms. Its ids are those of `encode`, which adds none without bos
        and eos."""
        from sentencepiece import SentencePieceProcessor

        return SentencePieceProcessor(model_file=str(self._raw.file_path))

    @cached_property
    def splits_at_spaces(self) -> bool:
        return _splits_at_spaces(self._raw)

    @cached_property
    def digits_alone(self) -> bool:
        """Whether every ASCII digit is a token of its own whatever is around it, in a tokenizer that
        splits at spaces: no piece holds a digit beside another character (SentencePiece's
        split_digits, mistral-embed's). A word then counts as the same word with its digits made 0."""
        if not self.splits_at_spaces:
            return False
        processor, joined = self._processor, "\0".join(self._pieces)
        for digit in _DIGIT.finditer(joined):  # a few hundred, in the names of byte pieces: "<0x30>"
            end = joined.find("\0", digit.end())
            piece = joined[joined.rfind("\0", 0, digit.start()) + 1 : end if end >= 0 else len(joined)]
            if len(piece) > 1 and not processor.is_byte(processor.piece_to_id(piece)):
                return False
        return True

    @cached_property
    def lines_alone(self) -> bool:
        """Whether every line break is a token of its own, in a tokenizer that splits at spaces: no
        piece holds one, and a line break alone is "▁" and the line break (mistral-embed's, by its byte
        piece). Pieces then never cross a line break: a word "a", a line break, "b" counts as "a" and
        as the line break and "b", less one."""
        return self.splits_at_spaces and "\n" not in "".join(self._pieces) and self.count("\n") == 2

    @cached_property
    def _pieces(self) -> list[str]:
        """Every piece of the vocabulary, as its text, by id."""
        processor = self._processor
        return processor.id_to_piece(list(range(processor.get_piece_size())))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text
        with self._lock:
            return self._raw.decode(ids[:max_tokens])


class ApproximateTokenizer:
    """Used only when mistral-common cannot load a tokenizer (e.g. sentencepiece missing): about
    3 characters per token, on the high side, so batches stay under the server's limits."""

    splits_at_spaces = False

    def count(self, text: str) -> int:
        return max(1, (len(text.encode("utf-8")) + 2) // 3)

    def count_many(self, texts: list[str]) -> list[int]:
        return [self.count(text) for text in texts]

    def truncate(self, text: str, max_tokens: int) -> str:
        data = text.encode("utf-8")[: max_tokens * 3]
        return data.decode("utf-8", errors="ignore")


def _family(model: str) -> str:
    name = model.lower()
    if "embed" in name and "codestral" not in name:
        # mistral-embed uses the original 32k SentencePiece vocabulary.
        return "v1"
    if name.startswith(("open-mistral-7b", "mistral-tiny", "open-mixtral-8x7b")):
        return "v1"
    if name.startswith(("open-mixtral-8x22b", "codestral-mamba", "codestral-2405")):
        return "v3"
    return "tekken"  # every model since mid-2024 (nemo, small 3.x, large 2.x, ministral, codestral 25xx)


# The families whose tokenizers spend at most one token per UTF-8 byte, plus one (what
# _bounded_by_bytes finds in a loaded tokenizer). Knowing it without loading lets a record whose
# input is answered by the cache skip the tokenizer, and its ~0.5 s of loading, altogether (counting
# costs ~30 us a text besides); a unit test holds this table to what the loaded tokenizers say.
BYTE_BOUNDED_FAMILIES = frozenset({"v1", "v3", "tekken"})


def upper_bound_for(model: str, text: str) -> int | None:
    """A ceiling on the token count of `text` for `model`, without loading its tokenizer, or None.
    (It bounds the fallback ApproximateTokenizer's count as well.)"""
    return len(text.encode("utf-8")) + 1 if _family(model) in BYTE_BOUNDED_FAMILIES else None


_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _load(family: str) -> Tokenizer:
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    try:
        if family == "v1":
            tokenizer = MistralTokenizer.v1()
        elif family == "v3":
            tokenizer = MistralTokenizer.v3()
        else:
            tokenizer = MistralTokenizer.v3(is_tekken=True)
    except ImportError:
        if family != "tekken":
            return _load("tekken")
        return ApproximateTokenizer()
    return _MistralCommonTokenizer(tokenizer.instruct_tokenizer.tokenizer)


def tokenizer_for(model: str) -> Tokenizer:
    with _LOCK:  # loading takes ~1 s; do it once even when two streams ask together
        return _load(_family(model))


def _splits_at_spaces(raw) -> bool:
    """Whether the tokenizer cuts a text at every space before it merges pieces, so that the count
    of a text is the sum of the counts of its space-separated words: true of SentencePiece models
    that split by whitespace, add the dummy prefix (so a word counted alone starts with the same
    `▁` it has after a space) and do not normalise (mistral-embed's). Tekken's pre-tokenizer attaches
    a space to the word after it and splits punctuation apart: not this rule."""
    if type(raw).__name__ != "SentencePieceTokenizer":
        return False
    try:
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(raw.file_path.read_bytes())
    except Exception:  # no protobuf, or another file layout: count whole texts
        return False
    normalizer = proto.normalizer_spec
    return (
        normalizer.name == "identity"
        and normalizer.add_dummy_prefix
        and not normalizer.remove_extra_whitespaces
        and proto.trainer_spec.split_by_whitespace
        and not proto.trainer_spec.treat_whitespace_as_suffix
    )


@lru_cache(maxsize=8)
def _chunk_counter(family: str) -> Tokenizer | WordCounts:
    tokenizer = _load(family)
    return WordCounts(tokenizer) if tokenizer.splits_at_spaces else tokenizer


def chunk_counter(model: str) -> Tokenizer | WordCounts:
    """The fastest exact token counts (`count`, `count_many`) of `model`'s tokenizer for texts split
    into chunks."""
    with _LOCK:
        return _chunk_counter(_family(model))
