"""destination-mistral's moderation, classification and OCR modes against the emulator, in process:
the columns each writes (DuckDB, JSON Lines, PostgreSQL), the chat routes for conversations, the
cache (a second write sends nothing), Batch API delivery, error rows and config errors."""

from __future__ import annotations

import base64
import json

import duckdb
import pytest
import requests
from airbyte_cdk.models import Status
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.destination import DestinationMistral
from mistral_emulator.catalogue import CLASSIFIER_MODEL_ID
from tests.support.builders import catalog, configured_stream, messages_with_states

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "text": {"type": "string"},
        "messages": {"type": "array"},
        "document": {"type": "string"},
    },
}
TEXTS = [
    "I will kill you and attack your house",
    "What a lovely afternoon in the park",
    "Please send the invoice, I was charged twice and want a refund",
    "The app shows an error at login, please help me fix it",
    "We would like a demo and a quote for the pricing plan",
    "Lovely weather today",
]
MODERATION = {"mode": "moderation", "fields": ["text"]}
CLASSIFICATION = {"mode": "classification", "model": CLASSIFIER_MODEL_ID, "fields": ["text"]}
OCR = {"mode": "ocr", "document_field": "document"}
CATEGORIES = {
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous_and_criminal_content",
    "selfharm",
    "health",
    "financial",
    "law",
    "pii",
}
MODE_COLUMNS = {
    "moderation": "_mistral_moderation_scores, _mistral_flagged, _mistral_flagged_categories",
    "classification": "_mistral_classification",
    "ocr": "_mistral_ocr_markdown, _mistral_ocr_pages, _mistral_ocr_page_count, _mistral_ocr_pages_processed, "
    "_mistral_ocr_doc_size_bytes",
}
SHARED = "_mistral_model, _mistral_prompt_tokens, _mistral_cached, _mistral_error"


def text_records(texts=TEXTS):
    return [{"id": i, "text": text} for i, text in enumerate(texts)]


def data_uri(pages: list[str], media_type: str = "text/plain") -> str:
    return f"data:{media_type};base64," + base64.b64encode("\f".join(pages).encode()).decode()


def make_config(emulator, tmp_path, enrichment, output="duckdb", **extra):
    outputs = {
        "duckdb": {"type": "duckdb", "path": str(tmp_path / "out.duckdb")},
        "jsonl": {"type": "jsonl", "directory": str(tmp_path / "jsonl")},
    }
    return {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "model": "mistral-small-latest",
        "enrichment": enrichment,
        "output": outputs[output] if isinstance(output, str) else output,
        **extra,
    }


def write(config, records, mode="append"):
    configured = catalog(configured_stream(name="items", mode=mode, schema=SCHEMA))
    return list(DestinationMistral().write(config, configured, messages_with_states(records, stream="items")))


def table(tmp_path, mode):
    """The rows of `items` by id, each as {column: value} with JSON columns parsed."""
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    try:
        cursor = con.execute(f"SELECT id, {MODE_COLUMNS[mode]}, {SHARED} FROM items ORDER BY id")
        names = [d[0] for d in cursor.description]
        found = cursor.fetchall()
        kinds = dict(
            con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'items'").fetchall()
        )
        out = []
        for row in found:
            item = dict(zip(names, row, strict=True))
            out.append({k: json.loads(v) if kinds[k] == "JSON" and v is not None else v for k, v in item.items()})
        return out
    finally:
        con.close()


def jsonl_rows(tmp_path):
    lines = (tmp_path / "jsonl" / "items.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda row: row["id"])


def calls(emulator, route):
    return sum(emulator.stats()["routes"].get(route, {}).values())


# ---- moderation ----------------------------------------------------------------------------------


def test_moderation_writes_scores_flags_and_flagged_categories(fresh_emulator, tmp_path):
    write(make_config(fresh_emulator, tmp_path, MODERATION), text_records())
    rows = table(tmp_path, "moderation")
    assert len(rows) == len(TEXTS)
    threat, calm = rows[0], rows[1]
    assert set(threat["_mistral_moderation_scores"]) == CATEGORIES
    assert threat["_mistral_flagged"] is True
    assert threat["_mistral_flagged_categories"] == ["violence_and_threats"]
    assert calm["_mistral_flagged"] is False and calm["_mistral_flagged_categories"] == []
    assert all(r["_mistral_model"] and r["_mistral_prompt_tokens"] > 0 and r["_mistral_error"] is None for r in rows)
    assert calls(fresh_emulator, "POST /v1/moderations") == 1, "the six texts travel in one batched request"


def test_moderation_per_category_threshold_replaces_the_default(fresh_emulator, tmp_path):
    enrichment = {
        **MODERATION,
        "threshold": 0.9,
        "category_thresholds": [{"category": "financial", "threshold": 0.1}],
    }
    write(make_config(fresh_emulator, tmp_path, enrichment), text_records(["I will kill you", "I invest in stocks"]))
    threat, money = table(tmp_path, "moderation")
    assert threat["_mistral_moderation_scores"]["violence_and_threats"] > 0.5
    assert threat["_mistral_flagged"] is False, "0.55 is under the 0.9 threshold"
    assert money["_mistral_flagged_categories"] == ["financial"]


def test_moderation_of_a_conversation_uses_the_chat_route_and_writes_jsonl_objects(fresh_emulator, tmp_path):
    records = [
        {"id": 0, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "I will kill you"}]},
        {"id": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": "good morning"}]}]},
        {"id": 2, "messages": [{"role": "robot", "content": "beep"}]},
    ]
    enrichment = {"mode": "moderation", "conversation_field": "messages"}
    write(make_config(fresh_emulator, tmp_path, enrichment, output="jsonl"), records)
    threat, calm, bad = jsonl_rows(tmp_path)
    assert calls(fresh_emulator, "POST /v1/chat/moderations") == 1
    assert calls(fresh_emulator, "POST /v1/moderations") == 0
    assert threat["_mistral_flagged"] is True and threat["_mistral_flagged_categories"] == ["violence_and_threats"]
    assert isinstance(threat["_mistral_moderation_scores"], dict)
    assert calm["_mistral_flagged"] is False
    assert bad["_mistral_error"] and "role" in bad["_mistral_error"] and bad["_mistral_flagged"] is None


def test_a_second_moderation_sync_is_answered_by_the_cache_and_takes_a_new_threshold(fresh_emulator, tmp_path):
    config = make_config(fresh_emulator, tmp_path, MODERATION)
    write(config, text_records())
    first = calls(fresh_emulator, "POST /v1/moderations")
    write({**config, "enrichment": {**MODERATION, "threshold": 0.99}}, text_records())
    assert calls(fresh_emulator, "POST /v1/moderations") == first, "the second sync sends no request"
    second = [r for r in table(tmp_path, "moderation") if r["_mistral_cached"]]
    assert len(second) == len(TEXTS), "every record of the second sync is answered by the cache"
    assert not any(r["_mistral_flagged"] for r in second), "the new threshold applies to the cached scores"


def test_moderation_error_rows_for_records_without_text(fresh_emulator, tmp_path):
    records = [{"id": 0, "text": "hello"}, {"id": 1}, {"id": 2, "text": "   "}]
    write(make_config(fresh_emulator, tmp_path, MODERATION), records)
    ok, missing, blank = table(tmp_path, "moderation")
    assert ok["_mistral_error"] is None and ok["_mistral_flagged"] is False
    assert missing["_mistral_error"] and missing["_mistral_moderation_scores"] is None
    assert blank["_mistral_error"] and blank["_mistral_flagged"] is None


# ---- classification ------------------------------------------------------------------------------


def test_classification_writes_scores_and_the_top_label_per_target(fresh_emulator, tmp_path):
    write(make_config(fresh_emulator, tmp_path, CLASSIFICATION), text_records())
    rows = {r["id"]: r["_mistral_classification"] for r in table(tmp_path, "classification")}
    assert set(rows[2]) == {"intent", "sentiment"}
    assert rows[2]["intent"]["label"] == "billing"
    assert rows[3]["intent"]["label"] == "support"
    assert rows[4]["intent"]["label"] == "sales"
    scores = rows[2]["intent"]["scores"]
    assert set(scores) == {"billing", "support", "sales"} and abs(sum(scores.values()) - 1) < 1e-6
    assert calls(fresh_emulator, "POST /v1/classifications") == 1


def test_classification_of_a_conversation_uses_the_chat_route(fresh_emulator, tmp_path):
    records = [{"id": 0, "messages": [{"role": "user", "content": "I need a refund for this invoice"}]}]
    enrichment = {"mode": "classification", "model": CLASSIFIER_MODEL_ID, "conversation_field": "messages"}
    write(make_config(fresh_emulator, tmp_path, enrichment), records)
    (row,) = table(tmp_path, "classification")
    assert row["_mistral_classification"]["intent"]["label"] == "billing"
    assert calls(fresh_emulator, "POST /v1/chat/classifications") == 1


def test_a_second_classification_sync_sends_nothing(fresh_emulator, tmp_path):
    config = make_config(fresh_emulator, tmp_path, CLASSIFICATION, output="jsonl")
    write(config, text_records())
    first = calls(fresh_emulator, "POST /v1/classifications")
    write(config, text_records())
    assert calls(fresh_emulator, "POST /v1/classifications") == first
    rows = jsonl_rows(tmp_path)
    cached = [r for r in rows if r["_mistral_cached"]]
    fresh = [r for r in rows if not r["_mistral_cached"]]
    assert len(cached) == len(fresh) == len(TEXTS)
    assert [r["_mistral_classification"] for r in cached] == [r["_mistral_classification"] for r in fresh]


# ---- OCR -----------------------------------------------------------------------------------------


def test_ocr_of_a_data_uri_writes_each_page_and_the_joined_markdown(fresh_emulator, tmp_path):
    pages = ["# Invoice 12", "Total: 30 EUR", "Thank you"]
    write(make_config(fresh_emulator, tmp_path, OCR), [{"id": 0, "document": data_uri(pages)}])
    (row,) = table(tmp_path, "ocr")
    assert row["_mistral_ocr_pages"] == pages
    assert row["_mistral_ocr_markdown"] == "\n\n".join(pages)
    assert row["_mistral_ocr_page_count"] == 3 and row["_mistral_ocr_pages_processed"] == 3
    assert row["_mistral_ocr_doc_size_bytes"] == len("\f".join(pages).encode())
    assert row["_mistral_model"] and row["_mistral_error"] is None


def test_ocr_reads_urls_images_and_raw_base64_of_a_declared_media_type(fresh_emulator, tmp_path):
    raw = base64.b64encode(b"first page\fsecond page").decode()
    records = [
        {"id": 0, "document": "https://example.com/reports/q3.pdf"},
        {"id": 1, "document": "https://example.com/scan.png"},
        {"id": 2, "document": raw},
    ]
    write(make_config(fresh_emulator, tmp_path, {**OCR, "media_type": "text/plain"}), records)
    pdf, image, text = table(tmp_path, "ocr")
    assert pdf["_mistral_ocr_page_count"] >= 1 and pdf["_mistral_error"] is None
    assert image["_mistral_ocr_page_count"] == 1, "an image is one page"
    assert text["_mistral_ocr_pages"] == ["first page", "second page"]


def test_ocr_reads_a_long_document_in_page_ranges(fresh_emulator, tmp_path):
    pages = [f"page {i}" for i in range(7)]
    enrichment = {**OCR, "pages_per_request": 3}
    write(make_config(fresh_emulator, tmp_path, enrichment), [{"id": 0, "document": data_uri(pages)}])
    (row,) = table(tmp_path, "ocr")
    assert row["_mistral_ocr_pages"] == pages, "every page is read, the last range reaching past the end too"
    assert row["_mistral_ocr_pages_processed"] == 7
    assert calls(fresh_emulator, "POST /v1/ocr") >= 3


def test_a_url_read_in_page_ranges_has_the_pages_it_has_when_read_whole(fresh_emulator, tmp_path):
    url = [{"id": 0, "document": "https://example.com/reports/annual.pdf"}]
    (tmp_path / "whole").mkdir()
    (tmp_path / "ranges").mkdir()
    write(make_config(fresh_emulator, tmp_path / "whole", OCR), url)
    write(make_config(fresh_emulator, tmp_path / "ranges", {**OCR, "pages_per_request": 1}), url)
    (whole,), (ranges,) = table(tmp_path / "whole", "ocr"), table(tmp_path / "ranges", "ocr")
    assert ranges["_mistral_ocr_pages"] == whole["_mistral_ocr_pages"], "the ranges stop at the document's end"
    assert calls(fresh_emulator, "POST /v1/ocr") <= 1 + whole["_mistral_ocr_page_count"] + 1


def test_ocr_max_pages_reads_only_the_first_pages(fresh_emulator, tmp_path):
    pages = [f"page {i}" for i in range(5)]
    write(make_config(fresh_emulator, tmp_path, {**OCR, "max_pages": 2}), [{"id": 0, "document": data_uri(pages)}])
    (row,) = table(tmp_path, "ocr")
    assert row["_mistral_ocr_pages"] == pages[:2]


def test_ocr_error_rows_for_documents_it_cannot_send(fresh_emulator, tmp_path):
    big = "data:application/pdf;base64," + base64.b64encode(b"%PDF" + b"x" * 3000).decode()
    records = [
        {"id": 0, "document": "not a url"},
        {"id": 1, "document": big},
        {"id": 2, "document": "data:text/plain;base64,@@@"},
        {"id": 3, "document": data_uri(["fine"])},
    ]
    write(make_config(fresh_emulator, tmp_path, {**OCR, "max_document_mb": 0.001}), records)
    bare, too_big, bad, fine = table(tmp_path, "ocr")
    assert "media_type" in bare["_mistral_error"]
    assert "max_document_mb" in too_big["_mistral_error"]
    assert bad["_mistral_error"], "the API refuses data that is not base64: the record's error"
    assert fine["_mistral_error"] is None and fine["_mistral_ocr_pages"] == ["fine"]
    assert "not a url" not in json.dumps([bare, too_big, bad]), "errors never quote the record's content"


def test_a_second_ocr_sync_sends_nothing(fresh_emulator, tmp_path):
    config = make_config(fresh_emulator, tmp_path, OCR)
    records = [{"id": i, "document": data_uri([f"doc {i}"])} for i in range(3)]
    write(config, records)
    write(config, records)
    assert calls(fresh_emulator, "POST /v1/ocr") == 3
    assert sum(1 for r in table(tmp_path, "ocr") if r["_mistral_cached"]) == 3


# ---- Batch API delivery --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enrichment", "records", "endpoint"),
    [
        (MODERATION, text_records(), "/v1/moderations"),
        (
            {"mode": "moderation", "conversation_field": "messages"},
            [{"id": i, "messages": [{"role": "user", "content": t}]} for i, t in enumerate(TEXTS)],
            "/v1/chat/moderations",
        ),
        (CLASSIFICATION, text_records(), "/v1/classifications"),
        (
            {**CLASSIFICATION, "fields": None, "conversation_field": "messages"},
            [{"id": i, "messages": [{"role": "user", "content": t}]} for i, t in enumerate(TEXTS)],
            "/v1/chat/classifications",
        ),
        (OCR, [{"id": i, "document": data_uri([f"p{i}", "end"])} for i in range(3)], "/v1/ocr"),
    ],
    ids=["moderation", "chat-moderation", "classification", "chat-classification", "ocr"],
)
def test_batch_delivery_writes_the_rows_online_delivery_writes(fresh_emulator, tmp_path, enrichment, records, endpoint):
    mode = enrichment["mode"]
    online_dir, batch_dir = tmp_path / "online", tmp_path / "batch"
    online_dir.mkdir()
    batch_dir.mkdir()
    write(make_config(fresh_emulator, online_dir, enrichment, cache={"enabled": False}), records)
    sent_online = calls(fresh_emulator, f"POST {endpoint}")
    delivery = {"mode": "batch", "poll_max_seconds": 0.2}
    write(make_config(fresh_emulator, batch_dir, enrichment, cache={"enabled": False}, delivery=delivery), records)
    online, batch = table(online_dir, mode), table(batch_dir, mode)
    assert len(batch) == len(records) and all(r["_mistral_error"] is None for r in batch)
    # Token counts differ by design: online requests are batched and share the server's count out,
    # a batch job carries one input per line.
    assert [{k: v for k, v in r.items() if k != "_mistral_prompt_tokens"} for r in batch] == [
        {k: v for k, v in r.items() if k != "_mistral_prompt_tokens"} for r in online
    ]
    assert calls(fresh_emulator, f"POST {endpoint}") == sent_online, "batch delivery sends nothing online"
    jobs = requests.get(
        f"{fresh_emulator.base_url}/v1/batch/jobs",
        headers={"Authorization": f"Bearer {fresh_emulator.api_key}"},
        params={"page_size": 100},
        timeout=10,
    ).json()["data"]
    assert any(job["endpoint"] == endpoint for job in jobs), f"a batch job ran on {endpoint}"


# ---- PostgreSQL ----------------------------------------------------------------------------------


def test_every_mode_writes_its_columns_to_postgresql(fresh_emulator, tmp_path, postgres_database):
    from integration_tests.test_destination_postgres import query

    cases = [
        (MODERATION, text_records()),
        (CLASSIFICATION, text_records()),
        (OCR, [{"id": 0, "document": data_uri(["a", "b"])}]),
    ]
    for enrichment, records in cases:
        mode = enrichment["mode"]
        output = {**postgres_database, "schema": mode}
        write(make_config(fresh_emulator, tmp_path, enrichment, output=output), records)
        rows = query(output, f"SELECT {MODE_COLUMNS[mode]}, {SHARED} FROM {mode}.items ORDER BY id")
        assert len(rows) == len(records)
        assert all(row[-1] is None for row in rows), rows
        if mode == "moderation":
            assert rows[0][0]["violence_and_threats"] > 0.5 and rows[0][1] is True
            assert rows[0][2] == ["violence_and_threats"]
        elif mode == "classification":
            assert rows[2][0]["intent"]["label"] == "billing"
        else:
            assert rows[0][:3] == ("a\n\nb", ["a", "b"], 2)


# ---- check and config errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enrichment", "words"),
    [
        ({**MODERATION, "model": "mistral-small-latest"}, "moderation capability"),
        ({**CLASSIFICATION, "model": "mistral-small-latest"}, "classification capability"),
        ({**OCR, "model": "mistral-embed"}, "ocr capability"),
        ({**CLASSIFICATION, "model": "ft:classifier:nope"}, "ft:classifier:nope"),
    ],
)
def test_check_refuses_a_model_without_the_modes_capability(emulator, tmp_path, enrichment, words):
    status = DestinationMistral().check(None, make_config(emulator, tmp_path, enrichment))
    assert status.status == Status.FAILED and words in status.message, status.message


@pytest.mark.parametrize("enrichment", [MODERATION, CLASSIFICATION, OCR])
def test_check_accepts_each_modes_default_model(emulator, tmp_path, enrichment):
    status = DestinationMistral().check(None, make_config(emulator, tmp_path, enrichment))
    assert status.status == Status.SUCCEEDED, status.message


@pytest.mark.parametrize(
    ("enrichment", "words"),
    [
        ({"mode": "moderation"}, "`enrichment`: give exactly one of `fields`"),
        ({"mode": "moderation", "fields": ["text"], "conversation_field": "messages"}, "`conversation_field`"),
        ({"mode": "classification", "fields": ["text"]}, "`enrichment.model`"),
        ({"mode": "ocr"}, "`enrichment.document_field`"),
        ({**OCR, "document_field": "nope"}, "`enrichment.document_field` names the field `nope`"),
        (
            {**MODERATION, "category_thresholds": [{"category": "x", "threshold": 2}]},
            "category_thresholds[0].threshold",
        ),
    ],
)
def test_config_errors_name_the_field(emulator, tmp_path, enrichment, words):
    with pytest.raises(AirbyteTracedException) as caught:
        write(make_config(emulator, tmp_path, enrichment), text_records())
    assert words in caught.value.message, caught.value.message
    assert getattr(caught.value.failure_type, "value", None) == "config_error"


def test_a_model_without_the_capability_stops_the_write_with_a_config_error(fresh_emulator, tmp_path):
    config = make_config(fresh_emulator, tmp_path, {**MODERATION, "model": "mistral-small-latest"})
    with pytest.raises(AirbyteTracedException) as caught:
        write(config, text_records())
    assert "moderation" in caught.value.message and caught.value.failure_type.value == "config_error"
