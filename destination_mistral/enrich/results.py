"""What an enrichment produces for one record, and the cache key of its input."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import orjson


@dataclass(frozen=True)
class Result:
    value: Any = None  # the answer (str or parsed JSON) or the embedding (numpy float32 array)
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    cached: bool = False
    # "input" (the record could not be made into a request, or the API refused it for its content),
    # "answer" (the API answered and was paid, but the answer cannot be used: not JSON, off the
    # schema, empty) or "api": decides the failure type when on_error is fail, and whether the
    # result is cached (a paid answer is, so that it is not paid for again).
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def paid(self) -> bool:
        return self.error_kind == "answer"

    def as_cached(self) -> Result:
        return replace(self, cached=True)


def failed(message: str, kind: str = "api") -> Result:
    return Result(error=message, error_kind=kind)


def cache_key(endpoint: str, model: str, params: Any, payload: Any) -> str:
    """sha256 over a canonical serialisation: key order and whitespace do not change the key, any
    parameter that changes the answer does."""
    canonical = orjson.dumps([endpoint, model, params, payload], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(canonical).hexdigest()
