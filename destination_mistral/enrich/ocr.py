"""OCR (/v1/ocr): the document a record's field designates (a URL, a data URI, or raw base64 of a
declared media type) read into markdown pages. One request per document, or several of at most
`pages_per_request` pages each (the `pages` parameter) for documents larger than the API takes at once.

The value stored is `{"pages": [markdown of each page], "pages_processed": n, "doc_size_bytes": n}`."""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from destination_mistral.enrich.results import Result, cache_key, failed
from destination_mistral.enrich.templates import RecordError, value_at
from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import ApiError, InvalidAnswer
from destination_mistral.settings import OcrSettings

ROUTE = "POST /v1/ocr"
# Mistral's OCR documentation states 1,000 pages per document: reading in ranges stops there when
# max_pages does not stop it sooner.
API_MAX_PAGES = 1000
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".bmp", ".tif", ".tiff"})
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_DATA_URI = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),", re.IGNORECASE)


@dataclass
class OcrInput:
    key: str
    document: dict[str, Any]  # the request's `document`: a document_url or image_url chunk
    tokens: int = 0  # OCR is billed by the page: nothing to count against tokens per minute
    cut: bool = False  # a document is never cut

    def __repr__(self) -> str:  # never the document: it is record content
        return f"OcrInput(key={self.key!r}, type={self.document.get('type')!r})"


class OcrEnricher:
    kind = "ocr"
    endpoint = "ocr"
    dimension: int | None = None

    def __init__(self, settings: OcrSettings, client: MistralClient | None) -> None:
        self.settings = settings
        self.client = client
        self.model = settings.model
        options = {
            "table_format": settings.table_format,
            "extract_header": settings.extract_header or None,
            "extract_footer": settings.extract_footer or None,
        }
        self._options = {name: value for name, value in options.items() if value is not None}
        # The cache key holds what changes the answer: the options and which pages are read (how
        # they are split into requests does not).
        self._key_params = {**self._options, "max_pages": settings.max_pages}

    def prepare(self, record: Mapping[str, Any]) -> OcrInput:
        document = self.document_of(value_at(record, self.settings.document_field))
        return OcrInput(key=cache_key(self.endpoint, self.model, self._key_params, document), document=document)

    def document_of(self, value: Any) -> dict[str, Any]:
        """The request's `document` for a field's value. Raises RecordError naming what is wrong,
        never the value."""
        where = ".".join(self.settings.document_field)
        if not isinstance(value, str) or not value.strip():
            raise RecordError(f"the document field `{where}` is missing, empty or not text")
        text = value.strip()
        lowered = text[:8].lower()
        if lowered.startswith(("https://", "http://")):
            path = urllib.parse.urlparse(text).path.lower()
            image = any(path.endswith(extension) for extension in IMAGE_EXTENSIONS)
            return _chunk(text, image)
        if lowered.startswith("data:"):
            match = _DATA_URI.match(text)
            if match is None or "base64" not in match.group(2).lower().split(";"):
                raise RecordError(f"the document field `{where}` holds a data URI that is not `data:<type>;base64,...`")
            self._check_size(text[match.end() :], where)
            return _chunk(text, match.group(1).lower().startswith("image/"))
        media_type = self.settings.media_type
        if media_type is None:
            raise RecordError(
                f"the document field `{where}` holds neither an http(s) URL nor a data URI; raw base64 needs "
                "`media_type` in the enrichment's settings"
            )
        if not _BASE64.fullmatch(text):
            raise RecordError(f"the document field `{where}` is not base64 (media_type {media_type} is set)")
        self._check_size(text, where)
        return _chunk(f"data:{media_type};base64,{''.join(text.split())}", media_type.startswith("image/"))

    def _check_size(self, data: str, where: str) -> None:
        size = len(data) * 3 // 4  # the decoded size, within the padding
        if size > self.settings.max_document_bytes:
            limit = self.settings.max_document_bytes / (1 << 20)
            raise RecordError(
                f"the document in `{where}` is about {size / (1 << 20):.1f} MB, over max_document_mb ({limit:g})"
            )

    def count_tokens(self, items: list[OcrInput]) -> None:
        """Nothing to count: OCR is billed by the page."""

    def request_body(self, item: OcrInput, pages: tuple[int, int] | None) -> dict[str, Any]:
        body = {"model": self.model, "document": item.document, **self._options}
        if pages is not None:
            body["pages"] = f"{pages[0]}-{pages[1]}"
        return body

    def body_for(self, item: OcrInput) -> dict[str, Any]:
        """The whole document in one request (a Batch API line): its first max_pages pages."""
        limit = self.settings.max_pages
        return self.request_body(item, (0, limit - 1) if limit else None)

    def submit(self, item: OcrInput) -> asyncio.Task[Result]:
        return asyncio.get_running_loop().create_task(self.run(item))

    def flush(self) -> None:
        """Nothing waits for a batch: every document is sent when it is submitted."""

    async def run(self, item: OcrInput) -> Result:
        try:
            if self.settings.pages_per_request:
                return await self._read_in_ranges(item)
            return await self._post(self.body_for(item))
        except ApiError as error:
            if error.kind == "config":
                raise error.as_config_error(ROUTE) from None
            # A document the API cannot read (unreachable URL, not a document, too many pages).
            return failed(error.message, kind="input")

    async def _post(self, body: dict[str, Any]) -> Result:
        return await self.client.post(self.endpoint, body, validate=self.read_answer)

    async def _read_in_ranges(self, item: OcrInput) -> Result:
        """The document in ranges of pages_per_request pages, until a range comes back short, max_pages
        is read, or a range past the document's end is refused. A refused range of several pages may
        reach past the end: its last page is known not to exist, and half the range is asked next, so
        the last pages are read too, in a few requests more."""
        end = self.settings.max_pages or API_MAX_PAGES  # pages before this one may exist
        span = self.settings.pages_per_request
        parts: list[Result] = []
        start = 0
        while start < end:
            last = min(start + span, end) - 1
            try:
                part = await self._post(self.request_body(item, (start, last)))
            except ApiError as error:
                if error.kind == "config" or "page" not in error.message.lower():
                    raise
                if last == start:
                    if start == 0:
                        raise
                    break  # page `start` does not exist: the document is read
                end, span = last, max(1, (last - start + 1) // 2)
                continue
            parts.append(part)
            if len(part.value["pages"]) < last - start + 1:
                break
            start = last + 1
        return _joined(parts)

    def parse(self, response: Any, items: Sequence[OcrInput]) -> list[Result]:
        return [self.read_answer(response)]

    def read_answer(self, response: Any) -> Result:
        """The pages' markdown and the usage of an OCR answer. One without pages of markdown cannot be
        an OCR answer: the service failed (InvalidAnswer)."""
        if not isinstance(response, Mapping):
            raise InvalidAnswer("an OCR answer that is not a JSON object")
        pages = response.get("pages")
        if not isinstance(pages, list) or not all(
            isinstance(page, Mapping) and isinstance(page.get("markdown"), str) for page in pages
        ):
            raise InvalidAnswer("an OCR answer without a list of pages of markdown")
        usage = response.get("usage_info") if isinstance(response.get("usage_info"), Mapping) else {}
        ordered = sorted(pages, key=lambda page: page.get("index") if isinstance(page.get("index"), int) else 0)
        value = {
            "pages": [page["markdown"] for page in ordered],
            "pages_processed": _count(usage.get("pages_processed"), len(pages)),
            "doc_size_bytes": _count(usage.get("doc_size_bytes"), None),
        }
        model = response.get("model") if isinstance(response.get("model"), str) else self.model
        return Result(value=value, model=model)


def _chunk(url: str, image: bool) -> dict[str, Any]:
    return {"type": "image_url", "image_url": url} if image else {"type": "document_url", "document_url": url}


def _joined(parts: list[Result]) -> Result:
    """The results of a document's ranges as one: the pages in order, the pages processed summed."""
    if len(parts) == 1:
        return parts[0]
    sizes = [part.value["doc_size_bytes"] for part in parts if part.value["doc_size_bytes"] is not None]
    value = {
        "pages": [page for part in parts for page in part.value["pages"]],
        "pages_processed": sum(part.value["pages_processed"] for part in parts),
        "doc_size_bytes": max(sizes) if sizes else None,
    }
    return Result(value=value, model=parts[0].model)


def _count(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
