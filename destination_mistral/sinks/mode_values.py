"""The values of a result in the columns of the modes whose answer is several values (moderation,
classification, OCR: schema.MODE_COLUMNS), as every output writes them. What is derived from the
paid answer (the flags, the joined markdown) is derived here, when the row is written, so that a
cached answer serves any threshold."""

from __future__ import annotations

from typing import Any

from destination_mistral.sinks.schema import (
    CHUNK_COUNT,
    CLASSIFICATION,
    FLAGGED,
    FLAGGED_CATEGORIES,
    MODE_COLUMNS,
    MODERATION_SCORES,
    OCR_DOC_SIZE_BYTES,
    OCR_MARKDOWN,
    OCR_PAGE_COUNT,
    OCR_PAGES,
    OCR_PAGES_PROCESSED,
    StreamPlan,
)

# Between two pages of the joined markdown: a blank line ends the last paragraph of a page.
PAGE_SEPARATOR = "\n\n"


def mode_values(plan: StreamPlan, value: Any) -> dict[str, Any]:
    """The mode's columns for a usable result's value; all null when there is none (an error row)."""
    if value is None:
        return dict.fromkeys(column.name for column in MODE_COLUMNS[plan.enrichment_mode])
    if plan.enrichment_mode == "moderation":
        flagged = plan.moderation.flagged_categories(value)
        return {MODERATION_SCORES: value, FLAGGED: bool(flagged), FLAGGED_CATEGORIES: flagged}
    if plan.enrichment_mode == "classification":
        return {CLASSIFICATION: value}
    if plan.chunked:  # the chunks themselves are rows of the child table (chunks.py)
        return {CHUNK_COUNT: len(value)}
    pages = value["pages"]
    return {
        OCR_MARKDOWN: PAGE_SEPARATOR.join(pages),
        OCR_PAGES: pages,
        OCR_PAGE_COUNT: len(pages),
        OCR_PAGES_PROCESSED: value.get("pages_processed"),
        OCR_DOC_SIZE_BYTES: value.get("doc_size_bytes"),
    }
