"""OCR (/v1/ocr) as a pure function of the request body and the account's files: the body is checked
like the real FastAPI service checks OCRRequest (422), the document is read (ocr_documents.py), and
pages of markdown are answered deterministically from the document's bytes or URL."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import orjson

from . import validation
from .errors import bad_request, invalid_model
from .inference import Admit, ModelLookup, seed_of
from .json_schema_answers import generate
from .ocr_documents import Document, load_document
from .tokens import count_tokens

OCR_FIELDS = frozenset(
    "model document pages include_image_base64 image_limit image_min_size bbox_annotation_format "
    "document_annotation_format document_annotation_prompt table_format extract_header extract_footer "
    "include_blocks confidence_scores_granularity".split()
)
# The three chunk types a document may be, by the field that tells them apart.
CHUNKS = {
    "file_id": ("FileChunk", "file", frozenset({"type", "file_id"})),
    "document_url": ("DocumentURLChunk", "document_url", frozenset({"type", "document_url", "document_name"})),
    "image_url": ("ImageURLChunk", "image_url", frozenset({"type", "image_url"})),
}
DEFAULT_MODEL = "mistral-ocr-latest"
# A letter-size page rendered at 200 dpi; images are one page at 72 dpi.
PAGE_DIMENSIONS = {"dpi": 200, "height": 2200, "width": 1700}
IMAGE_DIMENSIONS = {"dpi": 72, "height": 1024, "width": 768}
# A 1x1 grey JPEG: a real, decodable image for `include_image_base64`.
_JPEG = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAFA3PEY8MlBGQUZaVVBfeMiCeG5uePWvuZHI/////////////////////////////////"
    "///////////////////wAALCAABAAEBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9"
    "AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlq"
    "c3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6"
    "/9oACAEBAAA/AJ6//9k="
)
_VOCABULARY = (
    "report quarterly revenue customer contract invoice schedule analysis summary results method data "
    "table figure account policy review budget section growth market product service delivery period "
    "overview appendix total region team project risk forecast"
).split()


# ---- request checks ------------------------------------------------------------------------------------
def _check_document(c: validation.Checker, doc: Any) -> None:
    loc = ["body", "document"]
    if not c.dict_(doc, loc):
        return
    key = next((k for k in CHUNKS if k in doc), None)
    if key is None:
        # No branch of the union fits: pydantic reports each one's missing field.
        for field, (name, _, _) in CHUNKS.items():
            c.add("missing", loc + [name, field], "Field required", doc)
        return
    name, tag, allowed = CHUNKS[key]
    bloc = loc + [name]
    c.fields(doc, allowed, (key,), bloc)
    if doc.get("type", tag) != tag:
        c.add("literal_error", bloc + ["type"], f"Input should be '{tag}'", doc.get("type"), {"expected": f"'{tag}'"})
    value = doc[key]
    if key == "file_id":
        if c.string(value, bloc + [key]):
            try:
                uuid.UUID(value)
            except ValueError:
                c.add("uuid_parsing", bloc + [key], "Input should be a valid UUID", value)
    elif key == "image_url" and isinstance(value, dict):
        c.fields(value, frozenset({"url", "detail"}), ("url",), bloc + [key, "ImageURL"])
        if "url" in value:
            c.string(value["url"], bloc + [key, "ImageURL", "url"])
    else:
        c.string(value, bloc + [key])
        c.string(doc.get("document_name"), bloc + ["document_name"], nullable=True)


def check_ocr(body: dict) -> None:
    c = validation.Checker()
    c.fields(body, OCR_FIELDS, ("model", "document"), ["body"])
    c.string(body.get("model"), ["body", "model"], nullable=True)
    if "document" in body:
        _check_document(c, body["document"])
    pages = body.get("pages")
    if pages is not None and not isinstance(pages, str):
        if isinstance(pages, list):
            for i, p in enumerate(pages):
                c.number(p, ["body", "pages", "list[int]", i], integer=True, nullable=False)
        else:
            c.add("string_type", ["body", "pages", "str"], "Input should be a valid string", pages)
    for name in ("include_image_base64", "extract_header", "extract_footer", "include_blocks"):
        if name in body:
            c.boolean(body[name], ["body", name], nullable=name == "include_image_base64")
    for name in ("image_limit", "image_min_size"):
        c.number(body.get(name), ["body", name], integer=True)
    for name in ("bbox_annotation_format", "document_annotation_format"):
        c.response_format(body.get(name), ["body", name])
    c.string(body.get("document_annotation_prompt"), ["body", "document_annotation_prompt"], nullable=True)
    if body.get("table_format") is not None:
        c.enum(body["table_format"], ("markdown", "html"), ["body", "table_format"])
    if body.get("confidence_scores_granularity") is not None:
        c.enum(
            body["confidence_scores_granularity"], ("word", "page", "block"), ["body", "confidence_scores_granularity"]
        )
    c.raise_if_any()


def _annotation_schema(body: dict, name: str) -> dict | None:
    rf = body.get(name)
    if rf is None:
        return None
    if rf.get("type") != "json_schema" or not isinstance(rf.get("json_schema"), dict):
        raise bad_request(f"{name} must be of type json_schema.")
    return rf["json_schema"]["schema"]


def wanted_pages(pages: Any) -> list[int] | None:
    """`pages` as sorted distinct indices: a list of ints, or a string such as '0,2-4'."""
    if pages is None:
        return None
    if isinstance(pages, list):
        out = set(pages)
    else:
        out = set()
        for part in filter(None, (p.strip() for p in pages.split(","))):
            first, dash, last = part.partition("-")
            try:
                lo, hi = int(first), int(last) if dash else int(first)
            except ValueError:
                raise bad_request(f"Invalid pages: {pages!r}; expected numbers and ranges such as '0,2-4'.") from None
            out.update(range(lo, hi + 1))
    if any(p < 0 for p in out):
        raise bad_request(f"Invalid pages: {pages!r}; page numbers start from 0.")
    return sorted(out)


# ---- answer ----------------------------------------------------------------------------------------------
def _generated_text(doc: Document, index: int) -> str:
    rng = np.random.default_rng(seed_of("ocr", doc.digest.hex(), index))

    def sentence() -> str:
        ws = [_VOCABULARY[int(rng.integers(0, len(_VOCABULARY)))] for _ in range(int(rng.integers(6, 14)))]
        return " ".join(ws).capitalize() + "."

    title = " ".join(_VOCABULARY[int(rng.integers(0, len(_VOCABULARY)))] for _ in range(2)).title()
    paragraphs = [" ".join(sentence() for _ in range(int(rng.integers(2, 5)))) for _ in range(int(rng.integers(1, 4)))]
    return f"# {title}\n\n" + "\n\n".join(paragraphs)


def _image(doc: Document, index: int, body: dict, text: str, schema: dict | None) -> dict | None:
    """Generated pages of a document (not images, not text pages) carry an image on every third page."""
    seed = seed_of("ocr-image", doc.digest.hex(), index)
    if doc.is_image or doc.texts[index] is not None or seed % 3:
        return None
    width, height = 200 + seed % 600, 150 + (seed >> 10) % 400
    min_size = body.get("image_min_size")
    if min_size is not None and min(width, height) < min_size:
        return None
    x, y = (seed >> 20) % (PAGE_DIMENSIONS["width"] - width), (seed >> 30) % (PAGE_DIMENSIONS["height"] - height)
    return {
        "id": f"img-{index}.jpeg",
        "top_left_x": x,
        "top_left_y": y,
        "bottom_right_x": x + width,
        "bottom_right_y": y + height,
        "image_base64": "data:image/jpeg;base64," + _JPEG if body.get("include_image_base64") else None,
        "image_annotation": orjson.dumps(generate(schema, text, seed)).decode() if schema is not None else None,
    }


def _score(*parts: Any) -> float:
    return round(0.85 + (seed_of(*parts) % 1500) / 10_000, 4)


def _blocks(markdown: str, dims: dict, granularity: str | None) -> list[dict]:
    """One block per paragraph, stacked down the page; headings are title blocks."""
    paragraphs = [p for p in markdown.split("\n\n") if p.strip()]
    step = max(1, (dims["height"] - 200) // max(1, len(paragraphs)))
    blocks = []
    for i, p in enumerate(paragraphs):
        block = {
            "type": "title" if p.startswith("#") else "text",
            "top_left_x": 100,
            "top_left_y": 100 + i * step,
            "bottom_right_x": dims["width"] - 100,
            "bottom_right_y": 100 + i * step + step - 10,
            "content": p,
        }
        if granularity == "block":
            score = _score("block", p)
            block["confidence_scores"] = {
                "average_content_confidence_score": score,
                "minimum_content_confidence_score": round(score - 0.05, 4),
                "block_type_confidence_score": _score("type", p),
            }
        blocks.append(block)
    return blocks


def _confidence(markdown: str, granularity: str) -> dict:
    scores: dict = {
        "average_page_confidence_score": _score("page", markdown),
        "minimum_page_confidence_score": round(_score("page", markdown) - 0.1, 4),
    }
    if granularity == "word":
        found, start = [], 0
        for w in markdown.split():
            start = markdown.index(w, start)
            found.append({"text": w, "confidence": _score("word", w, start), "start_index": start})
            start += len(w)
        scores["word_confidence_scores"] = found
    return scores


def _page(doc: Document, index: int, body: dict, images_left: list[int], bbox_schema: dict | None) -> dict:
    text = doc.texts[index]
    markdown = text if text is not None else _generated_text(doc, index)
    image = _image(doc, index, body, markdown, bbox_schema) if images_left[0] > 0 else None
    images = []
    if image is not None:
        images_left[0] -= 1
        images.append(image)
        markdown += f"\n\n![{image['id']}]({image['id']})"
    dims = IMAGE_DIMENSIONS if doc.is_image else PAGE_DIMENSIONS
    granularity = body.get("confidence_scores_granularity")
    page = {
        "index": index,
        "markdown": markdown,
        "images": images,
        "tables": [],
        "hyperlinks": [],
        "header": doc.name if body.get("extract_header") else None,
        "footer": str(index + 1) if body.get("extract_footer") else None,
        "dimensions": dict(dims),
        "confidence_scores": _confidence(markdown, granularity) if granularity else None,
    }
    if body.get("include_blocks", True):
        page["blocks"] = _blocks(markdown, dims, granularity)
    return page


def ocr(body: Any, lookup: ModelLookup, account: Any, admit: Admit = None) -> tuple[dict, int]:
    """(OCRResponse, the tokens it cost: those of the markdown it returns, since an OCR request has no
    prompt; the real API bills per page and how OCR counts against tokens per minute is unconfirmed)."""
    body = validation.require_object(body)
    check_ocr(body)
    model_id = body["model"] if body["model"] is not None else DEFAULT_MODEL
    model = lookup(model_id)
    if model is None or not model.can("ocr"):
        raise invalid_model(400, model_id)
    settings = account.settings
    # An empty list asks for no subset: every page, as when `pages` is absent.
    wanted = wanted_pages(body.get("pages")) or None
    doc = load_document(body["document"], account, wanted or [], settings.ocr_max_document_bytes)
    count = len(doc.texts)
    if count > settings.ocr_max_pages:
        raise bad_request(f"Document has {count} pages, the maximum is {settings.ocr_max_pages} pages.")
    if wanted is not None and wanted[-1] >= count:
        raise bad_request(f"Page {wanted[-1]} does not exist: the document has {count} pages (numbered from 0).")
    bbox_schema = _annotation_schema(body, "bbox_annotation_format")
    doc_schema = _annotation_schema(body, "document_annotation_format")
    if body.get("document_annotation_prompt") is not None and doc_schema is None:
        raise bad_request("A document_annotation_format must be provided with a document_annotation_prompt.")
    limit = body.get("image_limit")
    images_left = [limit if limit is not None else count]
    pages = [_page(doc, i, body, images_left, bbox_schema) for i in (wanted if wanted is not None else range(count))]
    tokens = sum(count_tokens(p["markdown"]) for p in pages)
    if admit is not None:
        admit(tokens)
    annotation = None
    if doc_schema is not None:
        text = " ".join([body.get("document_annotation_prompt") or ""] + [p["markdown"] for p in pages])
        annotation = orjson.dumps(generate(doc_schema, text, seed_of("ocr-doc", doc.digest.hex()))).decode()
    response = {
        "pages": pages,
        "model": model_id,
        "document_annotation": annotation,
        "usage_info": {"pages_processed": len(pages), "doc_size_bytes": doc.size},
    }
    return response, tokens
