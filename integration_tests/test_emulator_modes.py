"""The emulator's classifier, OCR and FIM routes: answers validate against Mistral's published spec, bad
bodies and models get the real API's errors, the account limits and route switches apply to them, batch
jobs on their endpoints answer what the routes answer, and the official SDK parses every answer."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from integration_tests.test_emulator_openapi_conformance import (
    CURRENT,
    _h,
    _pointer,
    _post,
    validate_against,
    validate_response,
)
from mistral_emulator.catalogue import CLASSIFIER_MODEL_ID

pytestmark = pytest.mark.skipif(not CURRENT.exists(), reason="../shared/mistral-api/openapi.yaml not present")

OCR_MODEL = "mistral-ocr-latest"
FIM_MODEL = "codestral-latest"
MODERATION_MODEL = "mistral-moderation-latest"


def _data_uri(content: bytes, media_type: str = "application/pdf") -> str:
    return f"data:{media_type};base64," + base64.b64encode(content).decode()


def _pdf(pages: int) -> bytes:
    objects = b"".join(b"%d 0 obj << /Type /Page /Parent 1 0 R >> endobj\n" % (i + 2) for i in range(pages))
    return b"%PDF-1.7\n1 0 obj << /Type /Pages /Count " + str(pages).encode() + b" >> endobj\n" + objects + b"%%EOF\n"


def _ocr_body(document: dict, **extra) -> dict:
    return {"model": OCR_MODEL, "document": document, **extra}


def _text_document(*pages: str) -> dict:
    return {"type": "document_url", "document_url": _data_uri("\f".join(pages).encode(), "text/plain")}


# ---- classifiers ------------------------------------------------------------------------------------
def test_classifier_model_is_a_fine_tuned_card_with_the_classification_capability(emulator):
    card = requests.get(f"{emulator.base_url}/v1/models/{CLASSIFIER_MODEL_ID}", headers=_h(emulator), timeout=10)
    validate_response(card, "/v1/models/{model_id}", "GET")
    body = card.json()
    assert body["type"] == "fine-tuned" and body["root"] == "ministral-3b-latest"
    assert body["capabilities"]["classification"] and not body["capabilities"]["completion_chat"]


def test_classifications_validate_and_follow_the_text(emulator):
    texts = ["Please refund this invoice, I was charged twice", "Great demo, we want to buy the upgrade plan"]
    r = _post(emulator, "/v1/classifications", {"model": CLASSIFIER_MODEL_ID, "input": texts})
    assert r.status_code == 200, r.text
    validate_response(r, "/v1/classifications", "POST")
    billing, sales = r.json()["results"]
    assert set(billing) == {"intent", "sentiment"}
    assert max(billing["intent"]["scores"], key=billing["intent"]["scores"].get) == "billing"
    assert max(sales["intent"]["scores"], key=sales["intent"]["scores"].get) == "sales"
    assert max(sales["sentiment"]["scores"], key=sales["sentiment"]["scores"].get) == "positive"
    assert sum(billing["intent"]["scores"].values()) == pytest.approx(1.0)
    again = _post(emulator, "/v1/classifications", {"model": CLASSIFIER_MODEL_ID, "input": texts[0]}).json()
    assert again["results"][0] == billing, "scores are a function of the text alone"


def test_chat_classifications_take_one_or_several_instruct_requests(emulator):
    conversation = {"messages": [{"role": "user", "content": "the app shows an error and crashes"}]}
    for payload, expected in ((conversation, 1), ([conversation, conversation], 2)):
        r = _post(emulator, "/v1/chat/classifications", {"model": CLASSIFIER_MODEL_ID, "input": payload})
        assert r.status_code == 200, r.text
        validate_response(r, "/v1/chat/classifications", "POST")
        results = r.json()["results"]
        assert len(results) == expected
        assert max(results[0]["intent"]["scores"], key=results[0]["intent"]["scores"].get) == "support"


def test_chat_moderation_of_an_empty_list_answers_no_results(emulator):
    # The spec's ChatModerationRequest allows an empty list: a valid body, so no 422.
    r = _post(emulator, "/v1/chat/moderations", {"model": MODERATION_MODEL, "input": []})
    assert r.status_code == 200 and r.json()["results"] == []
    validate_response(r, "/v1/chat/moderations", "POST")


def test_moderation_model_classifies_into_its_categories(emulator):
    r = _post(emulator, "/v1/classifications", {"model": MODERATION_MODEL, "input": "I will attack you"})
    validate_response(r, "/v1/classifications", "POST")
    scores = r.json()["results"][0]["moderation_categories"]["scores"]
    assert scores["violence_and_threats"] > 0.5


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/classifications", {"model": "mistral-small-latest", "input": "x"}),
        ("/v1/classifications", {"model": "mistral-embed", "input": "x"}),
        ("/v1/chat/classifications", {"model": "codestral-latest", "input": {"messages": []}}),
        ("/v1/moderations", {"model": CLASSIFIER_MODEL_ID, "input": "x"}),
        ("/v1/ocr", _ocr_body(_text_document("a"), model="mistral-small-latest")),
        ("/v1/fim/completions", {"model": "mistral-small-latest", "prompt": "def"}),
        ("/v1/fim/completions", {"model": "no-such-model", "prompt": "def"}),
    ],
)
def test_a_model_without_the_capability_is_an_invalid_model(emulator, route, body):
    r = _post(emulator, route, body)
    assert r.status_code == 400
    assert r.json() == {
        "object": "error",
        "message": f"Invalid model: {body['model']}",
        "type": "invalid_model",
        "param": None,
        "code": "1500",
    }


@pytest.mark.parametrize(
    ("route", "body", "loc", "kind"),
    [
        (
            "/v1/classifications",
            {"model": CLASSIFIER_MODEL_ID, "input": "x", "top_k": 2},
            ["body", "top_k"],
            "extra_forbidden",
        ),
        ("/v1/classifications", {"model": CLASSIFIER_MODEL_ID}, ["body", "input"], "missing"),
        (
            "/v1/classifications",
            {"model": CLASSIFIER_MODEL_ID, "input": [1]},
            ["body", "input", "list[str]", 0],
            "string_type",
        ),
        (
            "/v1/chat/classifications",
            {"model": CLASSIFIER_MODEL_ID, "input": {"messages": [], "x": 1}},
            None,
            "extra_forbidden",
        ),
        (
            "/v1/moderations",
            {"model": MODERATION_MODEL, "input": "x", "categories": []},
            ["body", "categories"],
            "extra_forbidden",
        ),
        (
            "/v1/chat/moderations",
            {"model": MODERATION_MODEL, "input": [], "metadata": {}},
            ["body", "metadata"],
            "extra_forbidden",
        ),
        ("/v1/ocr", _ocr_body(_text_document("a"), include_images=True), ["body", "include_images"], "extra_forbidden"),
        ("/v1/ocr", {"document": {"type": "document_url", "document_url": "https://x.test/a.pdf"}}, None, "missing"),
        ("/v1/ocr", _ocr_body({"type": "file", "file_id": "not-a-uuid"}), None, "uuid_parsing"),
        ("/v1/ocr", _ocr_body(_text_document("a"), table_format="csv"), ["body", "table_format"], "enum"),
        (
            "/v1/fim/completions",
            {"model": FIM_MODEL, "prompt": "def", "messages": []},
            ["body", "messages"],
            "extra_forbidden",
        ),
        (
            "/v1/fim/completions",
            {"model": FIM_MODEL, "prompt": "def", "max_tokens": -1},
            ["body", "max_tokens"],
            "greater_than_equal",
        ),
        ("/v1/fim/completions", {"model": FIM_MODEL}, ["body", "prompt"], "missing"),
    ],
)
def test_bad_bodies_get_422_in_the_validation_error_shape(emulator, route, body, loc, kind):
    r = _post(emulator, route, body)
    assert r.status_code == 422, r.text
    validate_response(r, route, "POST")
    details = r.json()["detail"]
    assert any((loc is None or d["loc"] == loc) and (kind is None or d["type"] == kind) for d in details), details


# ---- OCR -------------------------------------------------------------------------------------------------
def test_ocr_text_data_uri_has_a_page_per_form_feed_and_honours_pages(emulator):
    document = _text_document("first page", "second page", "third page")
    r = _post(emulator, "/v1/ocr", _ocr_body(document))
    assert r.status_code == 200, r.text
    validate_response(r, "/v1/ocr", "POST")
    body = r.json()
    assert [p["markdown"] for p in body["pages"]] == ["first page", "second page", "third page"]
    assert body["usage_info"]["pages_processed"] == 3
    assert body["usage_info"]["doc_size_bytes"] == len("first page\fsecond page\fthird page")
    for pages in ("0,2", [2, 0], "0-0,2"):
        subset = _post(emulator, "/v1/ocr", _ocr_body(document, pages=pages)).json()
        assert [p["index"] for p in subset["pages"]] == [0, 2]
        assert subset["usage_info"]["pages_processed"] == 2
    missing = _post(emulator, "/v1/ocr", _ocr_body(document, pages=[3]))
    assert missing.status_code == 400 and missing.json()["type"] == "invalid_request_error"


def test_ocr_pdf_pages_images_and_options(emulator):
    pdf = _pdf(6)
    body = _ocr_body(
        {"type": "document_url", "document_url": _data_uri(pdf), "document_name": "report.pdf"},
        include_image_base64=True,
        extract_header=True,
        extract_footer=True,
        confidence_scores_granularity="block",
        document_annotation_format={
            "type": "json_schema",
            "json_schema": {
                "name": "doc",
                "schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
            },
        },
    )
    r = _post(emulator, "/v1/ocr", body)
    assert r.status_code == 200, r.text
    validate_response(r, "/v1/ocr", "POST")
    out = r.json()
    assert len(out["pages"]) == 6 and out["usage_info"] == {"pages_processed": 6, "doc_size_bytes": len(pdf)}
    assert out["pages"][0]["header"] == "report.pdf" and out["pages"][5]["footer"] == "6"
    assert "title" in json.loads(out["document_annotation"])
    images = [i for p in out["pages"] for i in p["images"]]
    assert images and all(i["image_base64"].startswith("data:image/jpeg;base64,") for i in images)
    assert all(b["confidence_scores"] is not None for p in out["pages"] for b in p["blocks"])
    assert _post(emulator, "/v1/ocr", body).json()["pages"] == out["pages"], "deterministic"
    without = _post(emulator, "/v1/ocr", _ocr_body(body["document"], include_blocks=False, image_limit=0)).json()
    assert all("blocks" not in p and p["images"] == [] for p in without["pages"])


def test_ocr_urls_images_and_uploaded_files(fresh_emulator):
    emu = fresh_emulator
    url = {"type": "document_url", "document_url": "https://example.test/papers/a.pdf"}
    first = _post(emu, "/v1/ocr", _ocr_body(url)).json()
    assert 1 <= len(first["pages"]) <= 5 and _post(emu, "/v1/ocr", _ocr_body(url)).json()["pages"] == first["pages"]
    # The emulator cannot fetch the URL: its pages come from the URL string, and a later page is
    # refused as for any document, so that a reader of page ranges meets the document's end.
    last = len(first["pages"]) - 1
    assert [p["index"] for p in _post(emu, "/v1/ocr", _ocr_body(url, pages=[last])).json()["pages"]] == [last]
    assert _post(emu, "/v1/ocr", _ocr_body(url, pages=[last + 1])).status_code == 400
    for image in ("https://example.test/scan.png", {"url": _data_uri(b"\x89PNG....", "image/png")}):
        r = _post(emu, "/v1/ocr", _ocr_body({"type": "image_url", "image_url": image}))
        validate_response(r, "/v1/ocr", "POST")
        assert r.json()["usage_info"]["pages_processed"] == 1
    up = requests.post(
        emu.base_url + "/v1/files",
        headers=_h(emu),
        data={"purpose": "ocr"},
        files={"file": ("scan.pdf", _pdf(2), "application/pdf")},
        timeout=10,
    ).json()
    r = _post(emu, "/v1/ocr", _ocr_body({"type": "file", "file_id": up["id"]}))
    validate_response(r, "/v1/ocr", "POST")
    assert r.json()["usage_info"]["pages_processed"] == 2
    batch_file = requests.post(
        emu.base_url + "/v1/files",
        headers=_h(emu),
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", b'{"custom_id": "0", "body": {}}\n', "application/jsonl")},
        timeout=10,
    ).json()
    assert _post(emu, "/v1/ocr", _ocr_body({"type": "file", "file_id": batch_file["id"]})).status_code == 400
    unknown = _post(emu, "/v1/ocr", _ocr_body({"type": "file", "file_id": "00000000-0000-4000-8000-000000000000"}))
    assert unknown.status_code == 404
    bad_url = _post(emu, "/v1/ocr", _ocr_body({"type": "document_url", "document_url": "ftp://x/a.pdf"}))
    assert bad_url.status_code == 400


def test_ocr_limits_are_settings(fresh_emulator):
    emu = fresh_emulator
    emu.configure(ocr_max_document_bytes=1000, ocr_max_pages=3)
    too_big = _post(emu, "/v1/ocr", _ocr_body(_text_document("x" * 2000)))
    assert too_big.status_code == 400 and "too large" in too_big.json()["message"]
    too_long = _post(emu, "/v1/ocr", _ocr_body(_text_document("a", "b", "c", "d")))
    assert too_long.status_code == 400 and "maximum is 3 pages" in too_long.json()["message"]
    assert _post(emu, "/v1/ocr", _ocr_body(_text_document("a", "b", "c"))).status_code == 200


# ---- FIM -------------------------------------------------------------------------------------------------
def test_fim_completion_validates_and_is_deterministic(emulator):
    body = {"model": FIM_MODEL, "prompt": "def add(a, b):", "suffix": "\nprint(add(1, 2))", "random_seed": 1}
    r = _post(emulator, "/v1/fim/completions", body)
    assert r.status_code == 200, r.text
    validate_response(r, "/v1/fim/completions", "POST")
    out = r.json()
    assert out["object"] == "chat.completion" and out["choices"][0]["message"]["content"].startswith("\n    ")
    assert _post(emulator, "/v1/fim/completions", body).json()["choices"] == out["choices"]
    short = _post(emulator, "/v1/fim/completions", {**body, "max_tokens": 2}).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 2
    long = _post(emulator, "/v1/fim/completions", {**body, "min_tokens": 200}).json()
    assert long["usage"]["completion_tokens"] >= 200


def test_fim_stream_events_validate(emulator):
    r = requests.post(
        emulator.base_url + "/v1/fim/completions",
        headers=_h(emulator),
        json={"model": FIM_MODEL, "prompt": "function f(x) {", "stream": True},
        stream=True,
        timeout=10,
    )
    lines = [line for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        validate_response(
            r, "/v1/fim/completions", "POST", content_type="text/event-stream", body={"data": json.loads(line[6:])}
        )


# ---- middleware: limits, switches, faults, stats -------------------------------------------------------
ROUTE_BODIES = {
    "/v1/moderations": {"model": MODERATION_MODEL, "input": ["hello there"]},
    "/v1/chat/moderations": {"model": MODERATION_MODEL, "input": [{"role": "user", "content": "hello"}]},
    "/v1/classifications": {"model": CLASSIFIER_MODEL_ID, "input": "hello there"},
    "/v1/chat/classifications": {
        "model": CLASSIFIER_MODEL_ID,
        "input": {"messages": [{"role": "user", "content": "hello"}]},
    },
    "/v1/ocr": _ocr_body(_text_document("hello there")),
    "/v1/fim/completions": {"model": FIM_MODEL, "prompt": "def hello():"},
}


def test_new_routes_go_through_auth_limits_faults_switches_and_stats(fresh_emulator):
    emu = fresh_emulator
    emu.configure(rate_limit_rps=1000, tokens_per_minute=1_000_000, tokens_per_month=10_000_000)
    for route, body in ROUTE_BODIES.items():
        r = _post(emu, route, body)
        assert r.status_code == 200, (route, r.text)
        validate_response(r, route, "POST")
        assert int(r.headers["x-ratelimit-tokens-query-cost"]) > 0, route
        assert "x-ratelimit-remaining-req-minute" in r.headers and "x-ratelimit-remaining-tokens-month" in r.headers
        no_key = requests.post(emu.base_url + route, json=body, timeout=10)
        assert no_key.status_code == 401
    routes = emu.stats()["routes"]
    for route in ROUTE_BODIES:
        assert routes[f"POST {route}"] == {"200": 1, "401": 1}, route
    stats = emu.stats()
    assert stats["ocr"] == {"requests": 1, "pages": 1} and stats["fim"]["requests"] == 1
    assert stats["classifiers"]["classifications"] == {"requests": 2, "inputs": 2}

    emu.configure(tokens_per_minute=1_000_000, tpm_shape="fixed", tpm_window_seconds=60, rate_limit_rps=None)
    emu.configure(tokens_per_minute=100)
    big = {"model": CLASSIFIER_MODEL_ID, "input": "word " * 200}
    assert _post(emu, "/v1/classifications", big).status_code == 400, "more than the meter holds: split"
    emu.configure(tokens_per_minute=None, tokens_per_month=None)

    emu.configure(absent_routes=["/v1/ocr", "POST /v1/fim/completions"])
    assert _post(emu, "/v1/ocr", ROUTE_BODIES["/v1/ocr"]).json() == {"detail": "Not Found"}
    assert _post(emu, "/v1/fim/completions", ROUTE_BODIES["/v1/fim/completions"]).status_code == 404
    emu.configure(absent_routes=None, fault_500=1.0, fault_routes=["/v1/classifications"])
    assert _post(emu, "/v1/classifications", ROUTE_BODIES["/v1/classifications"]).status_code in (500, 502, 503)
    assert _post(emu, "/v1/ocr", ROUTE_BODIES["/v1/ocr"]).status_code == 200


def test_tokens_per_minute_refuses_the_new_routes_with_429(fresh_emulator):
    emu = fresh_emulator
    emu.configure(tokens_per_minute=120, tpm_shape="fixed")
    codes = [_post(emu, "/v1/fim/completions", ROUTE_BODIES["/v1/fim/completions"]).status_code for _ in range(40)]
    assert codes[0] == 200 and 429 in codes
    refused = _post(emu, "/v1/fim/completions", ROUTE_BODIES["/v1/fim/completions"])
    assert refused.status_code == 429 and "Retry-After" in refused.headers


# ---- batch -----------------------------------------------------------------------------------------------
def _run_batch(emu, endpoint: str, model: str | None, bodies: list[dict]) -> dict:
    created = _post(
        emu,
        "/v1/batch/jobs",
        {
            "endpoint": endpoint,
            "model": model,
            "requests": [{"custom_id": str(i), "body": b} for i, b in enumerate(bodies)],
        },
    )
    assert created.status_code == 200, created.text
    job_id = created.json()["id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = requests.get(f"{emu.base_url}/v1/batch/jobs/{job_id}?inline=true", headers=_h(emu), timeout=10).json()
        if job["status"] == "SUCCESS":
            return job
        time.sleep(0.02)
    raise AssertionError(f"batch job {job_id} did not finish")


def _without_id(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k not in ("id", "created")}


@pytest.mark.parametrize("endpoint", list(ROUTE_BODIES))
def test_batch_jobs_answer_what_the_route_answers(fresh_emulator, endpoint):
    emu = fresh_emulator
    online = ROUTE_BODIES[endpoint]
    model = online["model"]
    line = {k: v for k, v in online.items() if k != "model"}
    bad = {**line, "unknown_field": 1}
    job = _run_batch(emu, endpoint, model, [line, bad])
    assert job["succeeded_requests"] == 1 and job["failed_requests"] == 1
    outputs = {o["custom_id"]: o for o in job["outputs"]}
    direct = _post(emu, endpoint, online).json()
    answer = outputs["0"]["response"]["body"]
    assert outputs["0"]["response"]["status_code"] == 200
    assert _without_id(answer) == _without_id(direct)
    validate_against(
        CURRENT,
        _pointer("paths", endpoint, "post", "responses", "200", "content", "application/json", "schema"),
        answer,
    )
    assert outputs["1"]["response"]["status_code"] == 422
    assert outputs["1"]["response"]["body"]["detail"][0]["type"] == "extra_forbidden"


# ---- the official SDK -------------------------------------------------------------------------------------
@pytest.fixture
def client(emulator):
    mistralai = pytest.importorskip("mistralai.client")
    return mistralai.Mistral(api_key=emulator.api_key, server_url=emulator.base_url)


def test_sdk_moderate_and_moderate_chat(client):
    r = client.classifiers.moderate(model=MODERATION_MODEL, inputs=["hello", "I will kill you"])
    assert len(r.results) == 2 and r.results[1].categories["violence_and_threats"] is True
    r = client.classifiers.moderate_chat(model=MODERATION_MODEL, inputs=[{"role": "user", "content": "hi"}])
    assert r.results[0].category_scores["sexual"] < 0.5


def test_sdk_classify_and_classify_chat(client):
    r = client.classifiers.classify(model=CLASSIFIER_MODEL_ID, inputs=["where is my invoice?"])
    scores = r.results[0]["intent"].scores
    assert max(scores, key=scores.get) == "billing"
    r = client.classifiers.classify_chat(
        model=CLASSIFIER_MODEL_ID, input=[{"messages": [{"role": "user", "content": "login error"}]}]
    )
    scores = r.results[0]["intent"].scores
    assert max(scores, key=scores.get) == "support"


def test_sdk_ocr_process(client):
    r = client.ocr.process(
        model=OCR_MODEL,
        document={"type": "document_url", "document_url": _data_uri(b"alpha\fbeta", "text/plain")},
        pages=[1],
        include_image_base64=False,
    )
    assert [p.index for p in r.pages] == [1] and r.pages[0].markdown == "beta"
    assert r.usage_info.pages_processed == 1 and r.usage_info.doc_size_bytes == len(b"alpha\fbeta")
    r = client.ocr.process(model=OCR_MODEL, document={"type": "image_url", "image_url": "https://x.test/a.png"})
    assert len(r.pages) == 1 and r.pages[0].dimensions.dpi == 72


def test_sdk_fim_complete_and_stream(client):
    r = client.fim.complete(model=FIM_MODEL, prompt="def add(a, b):", suffix="return a + b", max_tokens=50)
    assert r.choices[0].message.content and r.usage.total_tokens > 0
    text = "".join(
        event.data.choices[0].delta.content or ""
        for event in client.fim.stream(model=FIM_MODEL, prompt="def add(a, b):", suffix="return a + b", max_tokens=50)
    )
    assert text == r.choices[0].message.content


def test_sdk_surfaces_invalid_model_and_validation_errors(client):
    from mistralai.client import errors

    with pytest.raises(errors.SDKError) as caught:
        client.fim.complete(model="mistral-small-latest", prompt="def")
    assert caught.value.status_code == 400
    with pytest.raises(errors.HTTPValidationError):
        client.ocr.process(model=OCR_MODEL, document={"type": "file", "file_id": "not-a-uuid"})
