"""The moderation, classification and OCR settings: the example configs parse, each mode's fields
become typed settings with the spec's defaults, and a config the mode cannot run is refused naming
the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.settings import (
    ClassificationSettings,
    ModerationSettings,
    OcrSettings,
    check_stream_fields,
    parse_config,
)
from destination_mistral.sinks.plans import plan_stream
from destination_mistral.sinks.schema import MODE_COLUMNS
from tests.support.builders import configured_stream

CONFIGS = Path(__file__).resolve().parents[2] / "integration_tests" / "configs"
BASE = {"api_key": "k-123456", "output": {"type": "jsonl", "directory": "/tmp/destination-mistral-modes"}}


def parse(enrichment):
    return parse_config({**BASE, "enrichment": enrichment})


def refusal(enrichment) -> str:
    with pytest.raises(AirbyteTracedException) as caught:
        parse(enrichment)
    assert caught.value.failure_type.value == "config_error"
    return caught.value.message


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("destination_moderation.json", ModerationSettings),
        ("destination_classification.json", ClassificationSettings),
        ("destination_ocr.json", OcrSettings),
    ],
)
def test_the_example_config_of_each_mode_parses(name, kind):
    config = json.loads((CONFIGS / name).read_text())
    assert isinstance(parse_config(config).enrichment, kind)


def test_moderation_defaults_come_from_the_spec():
    settings = parse({"mode": "moderation", "template": "{{ text }}"}).enrichment
    assert settings.model == "mistral-moderation-latest"
    assert settings.threshold == 0.5 and settings.input_too_long == "error" and settings.max_input_tokens == 8192
    assert settings.endpoint == "moderations"


def test_a_conversation_field_sends_to_the_chat_routes():
    moderation = parse({"mode": "moderation", "conversation_field": "chat.messages"}).enrichment
    classification = parse({"mode": "classification", "model": "ft:classifier:x", "conversation_field": "m"}).enrichment
    assert moderation.conversation_field == ("chat", "messages") and moderation.endpoint == "chat/moderations"
    assert classification.endpoint == "chat/classifications"


def test_per_category_thresholds_replace_the_default_for_their_category_only():
    settings = parse(
        {
            "mode": "moderation",
            "fields": ["text"],
            "threshold": 0.7,
            "category_thresholds": [{"category": "pii", "threshold": 0.1}],
        }
    ).enrichment
    scores = {"pii": 0.2, "law": 0.6, "violence_and_threats": 0.71}
    assert settings.flagged_categories(scores) == ["pii", "violence_and_threats"]


def test_ocr_settings_take_sizes_in_bytes_and_a_lowercase_media_type():
    settings = parse({"mode": "ocr", "document_field": "doc", "max_document_mb": 2, "media_type": "Application/PDF"})
    assert settings.enrichment.max_document_bytes == 2 * 1024 * 1024
    assert settings.enrichment.media_type == "application/pdf"
    assert settings.enrichment.model == "mistral-ocr-latest"


@pytest.mark.parametrize(
    ("enrichment", "words"),
    [
        ({"mode": "moderation"}, "give exactly one of `fields`"),
        ({"mode": "classification", "model": "m", "template": "x", "conversation_field": "c"}, "`template` and"),
        ({"mode": "classification", "fields": ["text"]}, "`enrichment.model` is missing"),
        ({"mode": "classification", "model": "  ", "fields": ["text"]}, "`enrichment.model` is empty"),
        ({"mode": "moderation", "fields": ["a..b"]}, "`enrichment.fields[0]` has an empty name"),
        ({"mode": "moderation", "conversation_field": "a."}, "`enrichment.conversation_field` has an empty name"),
        (
            {"mode": "moderation", "fields": ["t"], "category_thresholds": [{"category": "pii", "threshold": 0.1}] * 2},
            "`enrichment.category_thresholds[1].category` names a category an earlier entry already sets",
        ),
        (
            {"mode": "ocr", "document_field": "d", "max_pages": 2, "pages_per_request": 5},
            "`enrichment.pages_per_request`",
        ),
        ({"mode": "ocr", "document_field": "d", "media_type": "pdf"}, "`enrichment.media_type`"),
        ({"mode": "ocr", "document_field": "d", "table_format": "csv"}, "`enrichment.table_format`"),
        ({"mode": "moderation", "template": "{{ text "}, "`enrichment.template`"),
    ],
)
def test_config_errors_name_the_field_and_the_fix(enrichment, words):
    assert words in refusal(enrichment)


SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "text": {"type": "string"}, "doc": {"type": "string"}},
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("enrichment", "setting"),
    [
        ({"mode": "moderation", "conversation_field": "messages"}, "enrichment.conversation_field"),
        ({"mode": "ocr", "document_field": "document"}, "enrichment.document_field"),
        ({"mode": "classification", "model": "m", "fields": ["texte"]}, "enrichment.fields"),
    ],
)
def test_a_field_the_stream_does_not_have_is_refused_before_the_sync(enrichment, setting):
    config = parse(enrichment)
    with pytest.raises(AirbyteTracedException) as caught:
        check_stream_fields(config, [configured_stream(schema=SCHEMA)])
    assert f"`{setting}` names the field" in caught.value.message


@pytest.mark.parametrize("mode", ["moderation", "classification", "ocr"])
def test_each_mode_plans_its_columns_before_the_shared_ones(mode):
    enrichment = {
        "moderation": {"mode": "moderation", "fields": ["text"]},
        "classification": {"mode": "classification", "model": "m", "fields": ["text"]},
        "ocr": {"mode": "ocr", "document_field": "doc"},
    }[mode]
    plan = plan_stream(configured_stream(schema=SCHEMA), parse(enrichment))
    names = [column.name for column in plan.meta_columns()]
    own = [column.name for column in MODE_COLUMNS[mode]]
    assert names[4 : 4 + len(own)] == own
    assert names[4 + len(own) :] == [
        "_mistral_model",
        "_mistral_prompt_tokens",
        "_mistral_completion_tokens",
        "_mistral_cached",
        "_mistral_error",
    ]


def test_a_chat_prompt_leaves_room_for_the_answer_and_the_template_within_the_context_the_api_lists():
    from destination_mistral.settings.enrichment import CHAT_TEMPLATE_TOKENS, ChatSettings

    listed = ChatSettings(model="voxtral-small-latest", prompt_template="x", context_length=32_768)
    assert listed.context_tokens == 32_768, "the API's max_context_length, over the names' table"
    assert listed.prompt_token_limit == 32_768 - 4096 - CHAT_TEMPLATE_TOKENS
    assert ChatSettings(model="voxtral-small-latest", prompt_template="x").context_tokens == 131_072, (
        "unknown: the table"
    )
