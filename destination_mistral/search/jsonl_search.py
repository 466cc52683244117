"""Search in the JSON Lines output: there is no database to ask, so the stream's file (or its chunks
file, `<stream>_chunks.jsonl`, when there is one) is read once, a batch of lines at a time, the
cosine similarities of each batch taken with numpy, and the k best kept. Exact, and memory bounded by
one batch and the k hits; for large outputs or repeated searches, DuckDB or PostgreSQL answer from
the database instead."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from destination_mistral.search.target import (
    CHUNKS_SUFFIX,
    Hit,
    Target,
    check_dimension,
    no_embeddings,
    stream_names,
    unknown_stream,
)
from destination_mistral.settings import OutputSettings
from destination_mistral.sinks.jsonl_files import read_lines, safe_name
from destination_mistral.sinks.schema import EMBEDDING
from mistral_connection.errors import config_error

BATCH_LINES = 2048  # 8 MB of float32 at 1024 dimensions


class JsonlSearch:
    def __init__(self, output: OutputSettings, namespace: str | None) -> None:
        self.output = output
        self.folder = output.path / safe_name(namespace) if namespace else output.path

    def close(self) -> None:
        pass

    def locate(self, stream: str) -> Target:
        path = self.folder / f"{safe_name(stream)}.jsonl"
        if not path.is_file():
            files = sorted(p.stem for p in self.folder.glob("*.jsonl")) if self.folder.is_dir() else []
            raise unknown_stream(stream, f"directory {str(self.folder)!r}", stream_names(files))
        chunks = self.folder / f"{safe_name(stream + CHUNKS_SUFFIX)}.jsonl"
        chosen = chunks if chunks.is_file() else path
        return Target(stream, str(chosen), str(chosen), chosen == chunks)

    def dimension(self, target: Target) -> int | None:
        """The size of the first stored embedding: the file is read up to it."""
        for _, rows in _batches(Path(target.table)):
            for row in rows:
                if isinstance(row.get(EMBEDDING), list):
                    return len(row[EMBEDDING])
        return None

    def nearest(self, target: Target, vector: np.ndarray, k: int) -> list[Hit]:
        unit = vector / (np.linalg.norm(vector) or 1.0)
        best: list[tuple[float, int, dict[str, Any]]] = []  # a min-heap of the k best: (score, -row number, row)
        seen_column = False
        for start, rows in _batches(Path(target.table)):
            seen_column = seen_column or any(EMBEDDING in row for row in rows)
            kept = [(start + i, row) for i, row in enumerate(rows) if row.get(EMBEDDING) is not None]
            if not kept:
                continue
            matrix = _matrix(target, [row[EMBEDDING] for _, row in kept], start)
            check_dimension(target, matrix.shape[1], len(unit))
            norms = np.linalg.norm(matrix, axis=1)
            scores = (matrix @ unit) / np.where(norms == 0, 1.0, norms)
            for (line, row), score in zip(kept, scores.tolist(), strict=True):
                row.pop(EMBEDDING)
                entry = (score, -line, row)  # of equal scores, the earlier line ranks first
                if len(best) < k:
                    heapq.heappush(best, entry)
                elif entry[:2] > best[0][:2]:
                    heapq.heapreplace(best, entry)
        if not seen_column and not best:
            raise no_embeddings(target)
        return [Hit(score, row) for score, _, row in sorted(best, key=lambda entry: entry[:2], reverse=True)]


def _batches(path: Path) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The file's rows, BATCH_LINES at a time, each batch with the number of its first row (blank
    lines are not rows)."""
    rows: list[dict[str, Any]] = []
    start = 1
    for number, line in enumerate(read_lines(path), start=1):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            raise config_error(f"{path}: row {number} is not a JSON object: the file is not one the destination wrote.")
        rows.append(row)
        if len(rows) == BATCH_LINES:
            yield start, rows
            start, rows = number + 1, []
    if rows:
        yield start, rows


def _matrix(target: Target, vectors: list[Any], start: int) -> np.ndarray:
    try:
        return np.asarray(vectors, dtype=np.float32)
    except (ValueError, TypeError):
        raise config_error(
            f"{target.label}: an embedding among rows {start} to {start + BATCH_LINES - 1} is not a list of numbers "
            "of the others' size: the file is not one the destination wrote."
        ) from None
