"""Reading an embeddings answer: its vectors checked against the inputs they were asked for, and the
tokens it reports shared out among those inputs."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from destination_mistral.enrich.embedding_input import EmbeddingInput
from destination_mistral.enrich.results import Result
from destination_mistral.http.errors import InvalidAnswer


def read_vectors(response: Any, count: int, dimension: int | None) -> list[np.ndarray]:
    """The `count` vectors of an answer, in input order, each of size `dimension` when it is known.
    Raises InvalidAnswer when the answer cannot be right: the service failed, and storing it would
    store a wrong vector (or lose one) silently."""
    if not isinstance(response, Mapping):
        raise InvalidAnswer("an embeddings answer that is not a JSON object")
    data = response.get("data")
    if not isinstance(data, list):
        raise InvalidAnswer("an embeddings answer without a data list")
    if len(data) != count:
        raise InvalidAnswer(f"an embeddings answer with {len(data)} vectors for {count} inputs")
    indexes = [entry.get("index") if isinstance(entry, Mapping) else None for entry in data]
    if any(not isinstance(i, int) or isinstance(i, bool) for i in indexes):
        if all(i is None for i in indexes):  # no indexes at all: the answer's order is the input's
            indexes = list(range(len(data)))
        else:
            raise InvalidAnswer("an embeddings answer with a missing or non-integer index")
    if sorted(indexes) != list(range(count)):
        raise InvalidAnswer("an embeddings answer whose indexes are not each input's once (duplicate or missing)")
    by_index: list[Any] = [None] * count
    for index, entry in zip(indexes, data, strict=False):
        by_index[index] = entry
    vectors = []
    for entry in by_index:
        vector = decode_vector(entry.get("embedding"))
        if vector is None:
            raise InvalidAnswer("an embeddings answer with an unreadable vector (not numbers, or bad base64)")
        if not np.isfinite(vector).all():
            raise InvalidAnswer("an embeddings answer with NaN or infinite values in a vector")
        expected = dimension or vector.shape[0]
        if vector.shape[0] != expected:
            raise InvalidAnswer(f"an embeddings answer with a vector of size {vector.shape[0]}, not {expected}")
        vectors.append(vector)
    return vectors


def prompt_tokens(response: Mapping[str, Any]) -> int | None:
    """The tokens the server counted for the whole request, when the answer says."""
    usage = response.get("usage") if isinstance(response.get("usage"), Mapping) else {}
    total = usage.get("prompt_tokens")
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def results_of(
    vectors: list[np.ndarray], items: Sequence[EmbeddingInput], model: str, total: int | None
) -> list[Result]:
    """One result per input. The API reports tokens per request; each input gets its share, by our
    token counts."""
    ours = sum(i.tokens for i in items) or 1
    results = []
    for item, vector in zip(items, vectors, strict=False):
        share = round(total * item.tokens / ours) if total is not None else item.tokens
        results.append(Result(value=vector, model=model, prompt_tokens=share, completion_tokens=0))
    return results


def decode_vector(raw: Any) -> np.ndarray | None:
    """The vector of an answer (base64 float32 or a list of numbers), or None when it is not one."""
    if isinstance(raw, str):
        try:
            data = base64.b64decode(raw, validate=True)
        except (ValueError, TypeError):
            return None
        if not data or len(data) % 4:
            return None
        return np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)
    if isinstance(raw, list) and raw:
        try:
            array = np.asarray(raw)
        except (ValueError, TypeError):
            return None
        # Numbers only: numpy would happily turn "1.5" or True into a float.
        if array.ndim != 1 or array.dtype.kind not in "fiu":
            return None
        return array.astype(np.float32, copy=False)
    return None
