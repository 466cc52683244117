"""What an OCR request's `document` designates, read far enough to know its size and pages. The emulator
never fetches the internet, so an http(s) URL is a document whose pages are derived from the URL string.

Page rules (also in NOTES.md):
- a PDF (bytes starting with `%PDF`): one page per `/Type /Page` object; with none, one page per
  started 64 KiB. Page text is generated from the bytes' hash.
- other text (UTF-8, no NUL byte): pages are separated by form feeds (`\\f`); each page's markdown is its
  text, stripped.
- other binary data: one page per started 64 KiB, generated text.
- an image (`image_url`, or a data URI / file whose media type is image/*): one page, generated text.
- an http(s) URL: `1 + crc32(url) % 5` pages; a request for a later page is refused, as for any
  document, so that a reader of page ranges meets the document's end.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import urllib.parse
import zlib
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request, not_found

PDF_BYTES_PER_PAGE = 64 * 1024
_PDF_PAGE_RE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
# Bytes the emulator reports for a page of a document it cannot fetch.
URL_BYTES_PER_PAGE = 48_000


@dataclass
class Document:
    name: str
    size: int
    # Per page: the text the page holds, or None where the emulator generates it.
    texts: list[str | None]
    is_image: bool
    # Seeds the generated text and images: the same document always reads the same.
    digest: bytes


def _too_large(size: int, limit: int) -> ApiError:
    return bad_request(f"Document is too large: {size} bytes, the maximum is {limit} bytes.")


def _decode_data_uri(uri: str) -> tuple[str, bytes]:
    header, sep, data = uri[5:].partition(",")
    if not sep:
        raise bad_request("Invalid data URI: no ',' between the media type and the data.")
    params = header.split(";")
    media_type = params[0] or "text/plain"
    if "base64" in params[1:]:
        try:
            return media_type, base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("Invalid data URI: the data is not valid base64.") from None
    return media_type, urllib.parse.unquote_to_bytes(data)


def _pages_of_bytes(content: bytes, media_type: str) -> tuple[list[str | None], bool]:
    if media_type.startswith("image/"):
        return [None], True
    if content.startswith(b"%PDF"):
        count = len(_PDF_PAGE_RE.findall(content)) or 1 + len(content) // PDF_BYTES_PER_PAGE
        return [None] * count, False
    if b"\x00" not in content:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return [page.strip() for page in text.split("\f")], False
    return [None] * (1 + len(content) // PDF_BYTES_PER_PAGE), False


def _url_document(url: str, is_image: bool, wanted: list[int], name: str) -> Document:
    crc = zlib.crc32(url.encode("utf-8"))
    count = 1 if is_image else 1 + crc % 5  # a page past these is refused, as for any document
    return Document(name, URL_BYTES_PER_PAGE * count + crc % 10_000, [None] * count, is_image, url.encode())


def _from_url(url: str, is_image: bool, wanted: list[int], name: str | None, max_bytes: int) -> Document:
    if url.startswith("data:"):
        media_type, content = _decode_data_uri(url)
        if len(content) > max_bytes:
            raise _too_large(len(content), max_bytes)
        texts, image = _pages_of_bytes(content, "image/" if is_image else media_type)
        digest = hashlib.sha256(content).digest()
        return Document(name or "document", len(content), texts, image, digest)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise bad_request(f"Invalid document URL: {url[:100]}")
    default_name = parsed.path.rsplit("/", 1)[-1] or parsed.netloc
    return _url_document(url, is_image, wanted, name or default_name)


def load_document(document: dict, account: Any, wanted: list[int], max_bytes: int) -> Document:
    """`document` is a validated FileChunk, DocumentURLChunk or ImageURLChunk; `wanted` the pages asked
    for (only an http(s) URL uses it, as the emulator's stand-in for the document's length)."""
    if "file_id" in document:
        meta = account.files.get(document["file_id"])
        content = account.content_of(document["file_id"]) if meta is not None else None
        if meta is None or content is None:
            raise not_found("File not found")
        if meta["purpose"] != "ocr":
            raise bad_request(
                f"File {meta['id']} was uploaded with purpose '{meta['purpose']}'; OCR reads files uploaded with "
                "purpose 'ocr'."
            )
        if len(content) > max_bytes:
            raise _too_large(len(content), max_bytes)
        texts, image = _pages_of_bytes(content, meta.get("mimetype") or "")
        return Document(meta["filename"], len(content), texts, image, hashlib.sha256(content).digest())
    if "image_url" in document:
        image = document["image_url"]
        url = image["url"] if isinstance(image, dict) else image
        return _from_url(url, True, wanted, None, max_bytes)
    return _from_url(document["document_url"], False, wanted, document.get("document_name"), max_bytes)
