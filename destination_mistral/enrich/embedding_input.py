"""What a record is embedded as: one text, its cache key, and its token count once known."""

from __future__ import annotations

from collections.abc import Callable


class EmbeddingInput:
    """One text to embed. Its token count is taken when first needed (to fill a batch), so an
    input the cache answers is never tokenized, unless it might be over the model's limit."""

    __slots__ = ("key", "text", "_tokens", "_count", "cut")

    def __init__(
        self,
        key: str,
        text: str,
        tokens: int | None = None,
        count: Callable[[str], int] | None = None,
        cut: bool = False,
    ) -> None:
        self.key = key
        self.text = text
        self._tokens = tokens
        self._count = count  # loads the tokenizer on first use
        self.cut = cut  # cut to the model's limit (`input_too_long: truncate`), not sent whole

    @property
    def tokens(self) -> int:
        if self._tokens is None:
            self._tokens = self._count(self.text)
        return self._tokens

    @property
    def counted(self) -> bool:
        return self._tokens is not None

    def set_tokens(self, count: int) -> None:
        self._tokens = count

    def __repr__(self) -> str:  # never the text: it is record content
        return f"EmbeddingInput(key={self.key!r}, chars={len(self.text)}, tokens={self._tokens!r})"
