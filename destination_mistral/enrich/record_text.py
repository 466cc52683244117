"""The text a record is sent as, for the enrichers that send one text per record (embeddings,
moderation, classification): its fields joined, or its template filled in, held to the input's
token limit (cut, or the record's error, as `input_too_long` says)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from destination_mistral.enrich.templates import RecordError, compile_template, render, text_from_fields
from destination_mistral.enrich.tokens import upper_bound_for


@dataclass(frozen=True)
class HeldText:
    """A record's text held to the token limit: its count when it was taken, and whether it had to
    be cut (the record's TRUNCATED change says so)."""

    text: str
    tokens: int | None
    cut: bool = False


class RecordText:
    def __init__(
        self,
        model: str,
        fields: tuple[tuple[str, ...], ...],
        template: str | None,
        max_input_tokens: int,
        input_too_long: str,
        what: str = "the text to embed",
    ) -> None:
        self.model = model
        self.fields = fields
        self.template = compile_template(template, "template") if template else None
        self.max_input_tokens = max_input_tokens
        self.input_too_long = input_too_long
        self.what = what  # how errors name the text

    @cached_property
    def tokenizer(self):
        from destination_mistral.enrich.tokens import tokenizer_for

        return tokenizer_for(self.model)

    def of(self, record: Mapping[str, Any]) -> HeldText:
        """The record's text and its token count when it had to be taken (None when the text is
        surely under the limit: it is counted later, only if it is sent). Raises RecordError."""
        return self.within_limit(self.whole(record))

    def whole(self, record: Mapping[str, Any]) -> str:
        """The record's text, however long (chunking splits it instead of cutting it). Raises
        RecordError."""
        text = render(self.template, record) if self.template is not None else text_from_fields(record, self.fields)
        if not text.strip():
            raise RecordError(f"{self.what} is empty")
        return text

    def within_limit(self, text: str, what: str | None = None, may_cut: bool = True) -> HeldText:
        """`text` held to max_input_tokens, with its count when it was taken. `may_cut` False refuses
        an over-long text whatever `input_too_long` says (a conversation: which messages to drop is
        not ours to choose)."""
        limit = self.max_input_tokens
        bound = upper_bound_for(self.model, text)
        tokens = None if bound is not None and bound <= limit else self.tokenizer.count(text)
        if tokens is not None and tokens > limit:
            if self.input_too_long == "error" or not may_cut:
                raise RecordError(f"{what or self.what} has {tokens} tokens, over max_input_tokens {limit}")
            cut = self.tokenizer.truncate(text, limit)
            if not cut.strip():  # the API refuses a blank input: the record's start is at fault
                raise RecordError(
                    f"{what or self.what} holds only whitespace in its first {limit} tokens: nothing is left to "
                    "send once it is cut to max_input_tokens. Strip the leading whitespace, or set `chunking`."
                )
            return HeldText(cut, min(limit, self.tokenizer.count(cut)), cut=True)
        return HeldText(text, tokens)
