"""The hits as the person at the terminal reads them (a table: score, key, a preview of the text that
was embedded, cut to the width) or as JSON (`--json`: every column of each row but the embedding)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from destination_mistral.enrich.templates import RecordError, compile_template, render, text_from_fields
from destination_mistral.search.target import CHUNK_INDEX, CHUNK_TEXT, Hit, Target, parent_key
from destination_mistral.settings import EmbeddingSettings
from destination_mistral.sinks.schema import RAW_ID

KEY_WIDTH = 36  # a raw id (a UUID) whole; longer key values are cut
ELLIPSIS = "…"


def as_json(hits: list[Hit]) -> str:
    rows = [{"score": hit.score, **{name: value for name, value in hit.row.items() if name != "score"}} for hit in hits]
    # default=str: the database's own types (Decimal, UUID, time) as their text.
    return orjson.dumps(rows, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode()


def as_table(target: Target, hits: list[Hit], settings: EmbeddingSettings, width: int) -> str:
    what = "chunks" if target.chunks else "rows"
    heading = f"{len(hits)} nearest {what} of stream {target.stream!r} in {target.label}"
    if not hits:
        return f"{heading}: none has an embedding."
    preview = _chunk_text if target.chunks else _embedded_text(settings)
    table: list[list[str]] = []
    for hit in hits:
        keys = parent_key(hit.row) if target.chunks else {RAW_ID: hit.row.get(RAW_ID)}
        chunk = [str(hit.row.get(CHUNK_INDEX))] if target.chunks else []
        table.append([f"{hit.score:.4f}", *(_cell(value, KEY_WIDTH) for value in keys.values()), *chunk])
    header_keys = parent_key(hits[0].row) if target.chunks else {RAW_ID: None}
    header = ["score", *header_keys, *(["chunk"] if target.chunks else [])]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    room = max(20, width - sum(widths) - 2 * len(widths))
    lines = [heading + ":", _line([*header, "text"], widths)]
    for cells, hit in zip(table, hits, strict=True):
        lines.append(_line([*cells, _cell(preview(hit.row), room)], widths))
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, [*widths, 0], strict=True)).rstrip()


def _cell(value: Any, width: int) -> str:
    text = re.sub(r"\s+", " ", "" if value is None else str(value)).strip()
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def _chunk_text(row: dict[str, Any]) -> str:
    return row.get(CHUNK_TEXT) or ""


def _embedded_text(settings: EmbeddingSettings) -> Callable[[dict[str, Any]], str]:
    """The text the stream embeds, built from a stored row as from the record: its `fields`, or its
    `template`. A row that no longer gives one (a value the output stored as NULL) shows nothing."""
    template = compile_template(settings.template, "template") if settings.template else None

    def text(row: dict[str, Any]) -> str:
        try:
            return render(template, row) if template is not None else text_from_fields(row, settings.fields)
        except RecordError:
            return ""

    return text
