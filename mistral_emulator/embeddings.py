"""Deterministic embeddings that still carry meaning: feature hashing of word unigrams and bigrams into
signed buckets. Two texts sharing words share buckets, so their cosine similarity grows with overlap,
which is enough for a demo semantic search to return sensible rows."""

from __future__ import annotations

import base64
import zlib
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import orjson

from .tokens import words

# Each feature lands in a few buckets so that collisions between unrelated words average out.
_BUCKETS_PER_FEATURE = 4
_BIGRAM_WEIGHT = 0.5
# A dense, text-specific component on top of the sparse word features: real embeddings have no zero
# dimensions, and a client benchmark should pay for serialising realistic floats. Small enough that
# shared words still dominate the similarity.
_TEXTURE_WEIGHT = 0.3
# The texture is a window of a fixed pool of Gaussian noise at an offset given by the text's hash:
# dense and deterministic without drawing `dim` random numbers per text. Windows at different
# offsets of white noise are nearly orthogonal.
_TEXTURE_POOL = 1 << 17
_MAX_DIM = 4096


def _stem(word: str) -> str:
    # A crude plural fold: "cats" and "cat" should be near neighbours.
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


# Odd 64-bit multipliers: bucket k of a feature is (hash * M_k) >> 32 — cheap, vectorised mixing of one
# 32-bit CRC into independent-looking indices and signs.
_MULTIPLIERS = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x94D049BB133111EB,
        0xBF58476D1CE4E5B9,
    ],
    dtype=np.uint64,
)


def _features(text: str) -> list[tuple[str, float]]:
    tokens = [_stem(w) for w in words(text)]
    if not tokens:
        # No words (punctuation, emoji): fall back to the characters so the vector is still defined.
        tokens = list(text.strip()) or ["<empty>"]
    feats = [(t, 1.0) for t in tokens]
    feats.extend((f"{a} {b}", _BIGRAM_WEIGHT) for a, b in zip(tokens, tokens[1:], strict=False))
    return feats


def _feature_hashes(text: str) -> tuple[list[int], list[float]]:
    # crc32, not hash(): the vectors must be the same in every process and every run.
    hashes, weights = [], []
    for feature, weight in _features(text):
        hashes.append(zlib.crc32(feature.encode("utf-8")))
        weights.append(weight)
    return hashes, weights


def _mix(hashes: np.ndarray, count: int) -> np.ndarray:
    """(len(hashes), count) well-spread 32-bit values derived from each hash."""
    with np.errstate(over="ignore"):
        mixed = (hashes[:, None] | (hashes[:, None] << np.uint64(32))) * _MULTIPLIERS[None, :count]
    return mixed >> np.uint64(32)


@lru_cache(maxsize=1)
def _texture_pool() -> np.ndarray:
    return np.random.default_rng(20240514).standard_normal(_TEXTURE_POOL + _MAX_DIM)


# Finished rows by (text, dim): pipelines re-embed the same texts often, and a hit skips all the work.
_ROW_CACHE: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
_ROW_CACHE_MAX_FLOATS = 8 * 1024 * 1024  # 32 MB of float32


def embed_texts(texts: list[str], dim: int) -> np.ndarray:
    """Returns an L2-normalised float32 matrix of shape (len(texts), dim)."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    missing: list[int] = []
    for i, text in enumerate(texts):
        row = _ROW_CACHE.get((text, dim))
        if row is None:
            missing.append(i)
        else:
            out[i] = row
    if missing:
        fresh = _embed_uncached([texts[i] for i in missing], dim)
        out[missing] = fresh
        limit = max(1, _ROW_CACHE_MAX_FLOATS // dim)
        for i, row in zip(missing, fresh, strict=False):
            _ROW_CACHE[(texts[i], dim)] = row
        while len(_ROW_CACHE) > limit:
            _ROW_CACHE.popitem(last=False)
    return out


def _embed_uncached(texts: list[str], dim: int) -> np.ndarray:
    if not 0 < dim <= _MAX_DIM:
        raise ValueError(f"dimension must be within 1..{_MAX_DIM}")
    n = len(texts)
    all_hashes: list[int] = []
    all_weights: list[float] = []
    per_row: list[int] = []
    for text in texts:
        hashes, weights = _feature_hashes(text)
        all_hashes.extend(hashes)
        all_weights.extend(weights)
        per_row.append(len(hashes))
    mixed = _mix(np.asarray(all_hashes, dtype=np.uint64), _BUCKETS_PER_FEATURE)
    indices = (mixed % np.uint64(dim)).astype(np.int64)
    signs = np.where(mixed & np.uint64(1 << 31), -1.0, 1.0) * np.asarray(all_weights)[:, None]
    rows = np.repeat(np.arange(n, dtype=np.int64), per_row)[:, None]
    matrix = np.bincount((indices + rows * dim).ravel(), weights=signs.ravel(), minlength=n * dim).reshape(n, dim)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    matrix /= norms
    pool = _texture_pool()
    for row, text in enumerate(texts):
        offset = zlib.crc32(text.encode("utf-8")) % _TEXTURE_POOL
        matrix[row] += pool[offset : offset + dim] * (_TEXTURE_WEIGHT / np.sqrt(dim))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(np.float32)


def quantize(matrix: np.ndarray, dtype: str) -> np.ndarray:
    """Applies `output_dtype`. The binary forms pack one bit per dimension, so their rows are dim/8 long."""
    if dtype == "float":
        return matrix
    if dtype == "int8":
        return np.clip(np.rint(matrix * 127.0), -128, 127).astype(np.int8)
    if dtype == "uint8":
        return np.clip(np.rint((matrix + 1.0) * 127.5), 0, 255).astype(np.uint8)
    bits = np.packbits(matrix > 0, axis=1)
    if dtype == "ubinary":
        return bits.astype(np.uint8)
    if dtype == "binary":
        return bits.view(np.int8)
    raise ValueError(dtype)


def to_base64(row: np.ndarray) -> str:
    """Little-endian bytes of the row (float32 for float output) as base64."""
    return base64.b64encode(row.astype(row.dtype.newbyteorder("<"), copy=False).tobytes()).decode("ascii")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# Serialised vectors by (text, dim, dtype, encoding). Serialising 1024 floats costs far more than
# computing them, so a repeated text (re-syncs, benchmarks) is answered by copying bytes.
_FRAGMENT_CACHE: OrderedDict[tuple[str, int, str, str], tuple[orjson.Fragment, int]] = OrderedDict()
_FRAGMENT_CACHE_MAX_BYTES = 64 * 1024 * 1024
_fragment_cache_bytes = 0


def embedding_fragments(texts: list[str], dim: int, dtype: str, encoding: str) -> list[orjson.Fragment]:
    """The JSON of each text's `embedding` value, ready to splice into a response."""
    global _fragment_cache_bytes
    out: list = [None] * len(texts)
    missing: list[int] = []
    for i, text in enumerate(texts):
        hit = _FRAGMENT_CACHE.get((text, dim, dtype, encoding))
        if hit is None:
            missing.append(i)
        else:
            out[i] = hit[0]
    if missing:
        matrix = quantize(embed_texts([texts[i] for i in missing], dim), dtype)
        for i, row in zip(missing, matrix, strict=False):
            raw = orjson.dumps(to_base64(row) if encoding == "base64" else row, option=orjson.OPT_SERIALIZE_NUMPY)
            frag = out[i] = orjson.Fragment(raw)
            key = (texts[i], dim, dtype, encoding)
            if key not in _FRAGMENT_CACHE:
                size = len(raw) + len(texts[i])
                _FRAGMENT_CACHE[key] = (frag, size)
                _fragment_cache_bytes += size
        while _fragment_cache_bytes > _FRAGMENT_CACHE_MAX_BYTES and _FRAGMENT_CACHE:
            _, (_, size) = _FRAGMENT_CACHE.popitem(last=False)
            _fragment_cache_bytes -= size
    return out
