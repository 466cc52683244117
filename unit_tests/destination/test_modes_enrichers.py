"""The moderation, classification and OCR enrichers against a client faked in process: what each
sends, how an answer is matched to its records, which failures are a record's and which the
service's, and how OCR reads a long document in page ranges."""

from __future__ import annotations

import asyncio
import base64

import pytest

from destination_mistral.enrich.classification import ClassificationEnricher
from destination_mistral.enrich.moderation import ModerationEnricher
from destination_mistral.enrich.ocr import OcrEnricher
from destination_mistral.enrich.templates import RecordError
from destination_mistral.http.errors import ApiError, InvalidAnswer
from destination_mistral.settings import ClassificationSettings, ModerationSettings, OcrSettings


class FakeClient:
    """Answers each POST with `answer(path, body)`; records what was sent."""

    def __init__(self, answer):
        self.answer = answer
        self.sent = []

    async def post(self, path, body, cost=0, validate=None, precheck=None, splittable=False):
        self.sent.append((path, body))
        response = self.answer(path, body)
        return validate(response) if validate is not None else response


def moderation_answer(path, body):
    inputs = body["input"]
    scores = [{"violence_and_threats": 0.9 if "kill" in str(i) else 0.01, "pii": 0.02} for i in inputs]
    return {"id": "m", "model": "mistral-moderation-2603", "results": [{"category_scores": s} for s in scores]}


def run_all(enricher, records):
    async def go():
        futures = [enricher.submit(enricher.prepare(r)) for r in records]
        enricher.flush()
        return await asyncio.gather(*futures)

    return asyncio.run(go())


def test_moderation_batches_texts_and_reads_one_result_per_record():
    client = FakeClient(moderation_answer)
    enricher = ModerationEnricher(ModerationSettings(fields=(("text",),)), client)
    results = run_all(enricher, [{"text": "I will kill"}, {"text": "hello"}, {"text": "kill again"}])
    assert [path for path, _ in client.sent] == ["moderations"]
    assert client.sent[0][1]["input"] == ["I will kill", "hello", "kill again"]
    assert [r.value["violence_and_threats"] for r in results] == [0.9, 0.01, 0.9]
    assert all(r.model == "mistral-moderation-2603" and r.prompt_tokens > 0 for r in results)


def test_a_conversation_goes_to_chat_moderations_as_a_list_of_messages():
    client = FakeClient(moderation_answer)
    enricher = ModerationEnricher(ModerationSettings(conversation_field=("chat",)), client)
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "kill"}]}]
    (result,) = run_all(enricher, [{"chat": chat}])
    path, body = client.sent[0]
    assert path == "chat/moderations"
    assert body["input"] == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "kill"}]]
    assert result.value["violence_and_threats"] == 0.9


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "missing or null"),
        ("text", "not a non-empty list"),
        ([], "not a non-empty list"),
        ([{"role": "robot", "content": "x"}], "role"),
        ([{"role": "user", "content": 3}], "no text content"),
        ([{"role": "user", "content": "  "}], "every message"),
    ],
)
def test_a_conversation_that_is_not_one_is_the_records_error_without_its_content(value, words):
    enricher = ModerationEnricher(ModerationSettings(conversation_field=("chat",)), None)
    with pytest.raises(RecordError) as caught:
        enricher.prepare({"chat": value})
    assert words in str(caught.value) and "robot" not in str(caught.value)


def test_a_conversation_over_the_limit_is_refused_even_when_texts_are_truncated():
    settings = ModerationSettings(conversation_field=("chat",), max_input_tokens=5, input_too_long="truncate")
    enricher = ModerationEnricher(settings, None)
    with pytest.raises(RecordError, match="conversation has"):
        enricher.prepare({"chat": [{"role": "user", "content": "word " * 50}]})


def test_one_refused_text_is_its_records_error_and_the_others_get_scores():
    def answer(path, body):
        if any("forbidden" in text for text in body["input"]):
            raise ApiError("HTTP 400: invalid input text", 400, kind="input")
        return moderation_answer(path, body)

    client = FakeClient(answer)
    enricher = ModerationEnricher(ModerationSettings(fields=(("text",),)), client)
    results = run_all(enricher, [{"text": "a"}, {"text": "forbidden"}, {"text": "b"}, {"text": "c"}])
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].error_kind == "input" and "forbidden" not in results[1].error


def test_an_answer_with_results_missing_is_the_services_failure():
    enricher = ModerationEnricher(ModerationSettings(fields=(("text",),)), None)
    items = [enricher.prepare({"text": "a"}), enricher.prepare({"text": "b"})]
    with pytest.raises(InvalidAnswer, match="1 results for 2 inputs"):
        enricher.parse({"model": "m", "results": [{"category_scores": {"pii": 0.1}}]}, items)
    with pytest.raises(InvalidAnswer, match="not a number"):
        enricher.parse({"model": "m", "results": [{"category_scores": {"pii": "high"}}] * 2}, items)


def test_the_cache_key_depends_on_the_route_and_the_model():
    text = ModerationEnricher(ModerationSettings(fields=(("t",),)), None).prepare({"t": "hi"}).key
    other_model = ModerationEnricher(ModerationSettings(model="mistral-moderation-2411", fields=(("t",),)), None)
    chat = ModerationEnricher(ModerationSettings(conversation_field=("c",)), None)
    assert text != other_model.prepare({"t": "hi"}).key
    assert text != chat.prepare({"c": [{"role": "user", "content": "hi"}]}).key


def classification_answer(path, body):
    results = [
        {"intent": {"scores": {"billing": 0.2, "support": 0.7, "sales": 0.1}}, "mood": {"scores": {"a": 0.5, "b": 0.5}}}
        for _ in body["input"]
    ]
    return {"id": "c", "model": body["model"], "results": results}


def test_classification_stores_scores_and_the_top_label_per_target():
    client = FakeClient(classification_answer)
    enricher = ClassificationEnricher(ClassificationSettings(model="ft:classifier:x", template="{{ t }}"), client)
    (result,) = run_all(enricher, [{"t": "broken login"}])
    assert result.value["intent"] == {"scores": {"billing": 0.2, "support": 0.7, "sales": 0.1}, "label": "support"}
    assert result.value["mood"]["label"] == "a", "a tie goes to the label listed first"
    assert client.sent[0] == ("classifications", {"model": "ft:classifier:x", "input": ["broken login"]})


def test_a_classified_conversation_is_sent_as_an_instruct_request():
    client = FakeClient(classification_answer)
    enricher = ClassificationEnricher(
        ClassificationSettings(model="ft:classifier:x", conversation_field=("m",)), client
    )
    run_all(enricher, [{"m": [{"role": "user", "content": "hi"}]}])
    assert client.sent[0] == (
        "chat/classifications",
        {"model": "ft:classifier:x", "input": [{"messages": [{"role": "user", "content": "hi"}]}]},
    )


def test_a_classification_result_without_targets_is_the_services_failure():
    enricher = ClassificationEnricher(ClassificationSettings(model="m", fields=(("t",),)), None)
    with pytest.raises(InvalidAnswer):
        enricher.parse({"results": [{}]}, [enricher.prepare({"t": "x"})])


# ---- OCR -----------------------------------------------------------------------------------------


def ocr(**given):
    return OcrEnricher(OcrSettings(document_field=("doc",), **given), None)


@pytest.mark.parametrize(
    ("value", "chunk"),
    [
        ("https://x.io/a/report.pdf", {"type": "document_url", "document_url": "https://x.io/a/report.pdf"}),
        ("https://x.io/scan.JPG?size=2", {"type": "image_url", "image_url": "https://x.io/scan.JPG?size=2"}),
        ("data:image/png;base64,iVBO", {"type": "image_url", "image_url": "data:image/png;base64,iVBO"}),
        (
            "data:application/pdf;base64,JVBE",
            {"type": "document_url", "document_url": "data:application/pdf;base64,JVBE"},
        ),
    ],
)
def test_a_documents_chunk_follows_its_url_or_media_type(value, chunk):
    assert ocr().prepare({"doc": value}).document == chunk


def test_raw_base64_needs_a_media_type_and_becomes_a_data_uri():
    raw = base64.b64encode(b"%PDF-1.7 ...").decode()
    with pytest.raises(RecordError, match="media_type"):
        ocr().prepare({"doc": raw})
    document = ocr(media_type="application/pdf").prepare({"doc": raw}).document
    assert document == {"type": "document_url", "document_url": f"data:application/pdf;base64,{raw}"}
    with pytest.raises(RecordError, match="not base64"):
        ocr(media_type="application/pdf").prepare({"doc": "not base64!"})


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "missing, empty"),
        (12, "missing, empty"),
        ("data:text/plain,hello", "not `data:<type>;base64"),
        ("data:application/pdf;base64," + "A" * 4000, "over max_document_mb"),
    ],
)
def test_a_document_that_cannot_be_sent_is_the_records_error(value, words):
    with pytest.raises(RecordError, match=words):
        ocr(max_document_bytes=1000).prepare({"doc": value})


def test_options_are_sent_only_when_set_and_max_pages_becomes_a_pages_range():
    enricher = ocr(max_pages=3, table_format="html", extract_footer=True)
    body = enricher.body_for(enricher.prepare({"doc": "https://x.io/a.pdf"}))
    assert body == {
        "model": "mistral-ocr-latest",
        "document": {"type": "document_url", "document_url": "https://x.io/a.pdf"},
        "table_format": "html",
        "extract_footer": True,
        "pages": "0-2",
    }
    plain = ocr()
    assert "pages" not in plain.body_for(plain.prepare({"doc": "https://x.io/a.pdf"}))


def paged_document(pages: int):
    """An OCR service for a document of `pages` pages that refuses a range past its end, as the API
    does for pages the document does not have."""

    def answer(path, body):
        first, last = (int(n) for n in body["pages"].split("-"))
        if last >= pages:
            raise ApiError(f"HTTP 400: Page {last} does not exist", 400, kind="input")
        read = [{"index": i, "markdown": f"p{i}"} for i in range(first, last + 1)]
        return {"model": "ocr", "pages": read, "usage_info": {"pages_processed": len(read), "doc_size_bytes": 99}}

    return answer


@pytest.mark.parametrize("pages", [1, 2, 3, 4, 7, 9, 10])
def test_a_document_read_in_ranges_gets_every_page_once(pages):
    client = FakeClient(paged_document(pages))
    enricher = OcrEnricher(OcrSettings(document_field=("doc",), pages_per_request=3), client)
    result = asyncio.run(enricher.run(enricher.prepare({"doc": "https://x.io/a.pdf"})))
    assert result.ok, result.error
    assert result.value["pages"] == [f"p{i}" for i in range(pages)]
    assert result.value["pages_processed"] == pages and result.value["doc_size_bytes"] == 99
    assert len(client.sent) <= pages // 3 + 4, "a range past the end costs a few halvings, not one per page"


def test_max_pages_stops_the_ranges():
    client = FakeClient(paged_document(50))
    enricher = OcrEnricher(OcrSettings(document_field=("doc",), pages_per_request=4, max_pages=10), client)
    result = asyncio.run(enricher.run(enricher.prepare({"doc": "https://x.io/a.pdf"})))
    assert result.value["pages"] == [f"p{i}" for i in range(10)]
    assert [body["pages"] for _, body in client.sent] == ["0-3", "4-7", "8-9"]


def test_a_document_the_api_refuses_is_the_records_error():
    def answer(path, body):
        raise ApiError("HTTP 400: Invalid document URL", 400, kind="input")

    enricher = OcrEnricher(OcrSettings(document_field=("doc",), pages_per_request=3), FakeClient(answer))
    result = asyncio.run(enricher.run(enricher.prepare({"doc": "https://x.io/a.pdf"})))
    assert not result.ok and result.error_kind == "input" and "Invalid document URL" in result.error


def test_an_ocr_answer_without_pages_of_markdown_is_the_services_failure():
    with pytest.raises(InvalidAnswer):
        ocr().read_answer({"model": "ocr", "pages": [{"index": 0}], "usage_info": {"pages_processed": 1}})
    result = ocr().read_answer({"pages": [{"index": 1, "markdown": "b"}, {"index": 0, "markdown": "a"}]})
    assert result.value == {"pages": ["a", "b"], "pages_processed": 2, "doc_size_bytes": None}


def test_the_document_never_appears_in_an_inputs_repr():
    item = ocr().prepare({"doc": "https://x.io/secret-report.pdf"})
    assert "secret" not in repr(item)
