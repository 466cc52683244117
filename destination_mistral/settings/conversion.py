"""A validated config turned into the typed settings. Nothing is checked here (settings.validation
and settings.rules have done it); a field left out takes the typed settings' default, which is the
spec's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from destination_mistral.settings.enrichment import (
    MIB,
    ChatSettings,
    ChunkingSettings,
    ClassificationSettings,
    EmbeddingSettings,
    Enrichment,
    ModerationSettings,
    NoEnrichment,
    OcrSettings,
    ResponseFormat,
    default_overlap,
)
from destination_mistral.settings.outputs import build_output
from destination_mistral.settings.rules import field_path
from destination_mistral.settings.spec_fields import field_schema
from destination_mistral.settings.typed import (
    Delivery,
    DestinationConfig,
    Limits,
)
from mistral_connection import MistralConnection

_CHAT_VALUES = (
    "temperature",
    "top_p",
    "max_tokens",
    "random_seed",
    "safe_prompt",
    "max_input_tokens",
    "input_too_long",
)
_EMBEDDING_VALUES = ("output_dimension", "max_input_tokens", "input_too_long")
_CHUNKING_VALUES = ("max_tokens", "overlap_tokens", "split_on")
_CLASSIFIER_VALUES = ("max_input_tokens", "input_too_long")
_OCR_VALUES = ("max_pages", "pages_per_request", "table_format", "extract_header", "extract_footer")
_LIMIT_VALUES = (
    "max_concurrent_requests",
    "requests_per_second",
    "tokens_per_minute",
    "max_retries",
    "max_retry_seconds",
    "timeout_seconds",
)
_DELIVERY_VALUES = ("mode", "auto_threshold", "requests_per_job", "poll_max_seconds")


def build_config(config: Mapping[str, Any], connection: MistralConnection) -> DestinationConfig:
    overrides = {
        item["stream_name"]: build_enrichment(item["enrichment"], connection.model)
        for item in config.get("stream_overrides") or []
    }
    given = {}
    if "on_error" in config:
        given["on_error"] = config["on_error"]
    if "enabled" in (config.get("cache") or {}):
        given["cache_enabled"] = config["cache"]["enabled"]
    return DestinationConfig(
        connection=connection,
        enrichment=build_enrichment(config["enrichment"], connection.model),
        overrides=overrides,
        output=build_output(config["output"]),
        limits=_limits(config.get("limits") or {}),
        delivery=Delivery(**_values(config.get("delivery") or {}, _DELIVERY_VALUES, "delivery")),
        **given,
    )


def build_enrichment(raw: Mapping[str, Any], default_model: str) -> Enrichment:
    mode = raw["mode"]
    if mode == "chat":
        return ChatSettings(
            model=_text(raw.get("model")) or default_model,
            prompt_template=raw["prompt_template"],
            system_prompt=raw.get("system_prompt") or None,
            response_format=_response_format(raw.get("response_format")),
            **_values(raw, _CHAT_VALUES, "enrichment", "chat"),
        )
    if mode == "embeddings":
        given = _values(raw, _EMBEDDING_VALUES, "enrichment", "embeddings")
        if _text(raw.get("model")):
            given["model"] = _text(raw["model"])
        chunking = raw.get("chunking")
        return EmbeddingSettings(
            fields=tuple(field_path(text) for text in raw.get("fields") or ()),
            template=raw.get("template") or None,
            chunking=_chunking(chunking) if isinstance(chunking, Mapping) else None,
            **given,
        )
    if mode in ("moderation", "classification"):
        return _classifier(raw, mode)
    if mode == "ocr":
        return _ocr(raw)
    return NoEnrichment()


def _chunking(raw: Mapping[str, Any]) -> ChunkingSettings:
    given = _values(raw, _CHUNKING_VALUES, "enrichment", "embeddings", "chunking")
    if "overlap_tokens" not in given:
        given["overlap_tokens"] = default_overlap(given.get("max_tokens", ChunkingSettings.max_tokens))
    return ChunkingSettings(metadata_fields=tuple(_text(name) for name in raw.get("metadata_fields") or ()), **given)


def _classifier(raw: Mapping[str, Any], mode: str) -> ModerationSettings | ClassificationSettings:
    """Moderation and classification read a record alike: its text (fields or template) or its
    conversation."""
    given = _values(raw, _CLASSIFIER_VALUES, "enrichment", mode)
    if _text(raw.get("model")):
        given["model"] = _text(raw["model"])
    conversation = _text(raw.get("conversation_field"))
    given.update(
        fields=tuple(field_path(text) for text in raw.get("fields") or ()),
        template=raw.get("template") or None,
        conversation_field=field_path(conversation) if conversation else None,
    )
    if mode == "classification":
        return ClassificationSettings(**given)
    if "threshold" in raw:
        given["threshold"] = float(raw["threshold"])
    given["category_thresholds"] = tuple(
        (item["category"].strip(), float(item["threshold"])) for item in raw.get("category_thresholds") or ()
    )
    return ModerationSettings(**given)


def _ocr(raw: Mapping[str, Any]) -> OcrSettings:
    given = _values(raw, _OCR_VALUES, "enrichment", "ocr")
    if _text(raw.get("model")):
        given["model"] = _text(raw["model"])
    if _text(raw.get("media_type")):
        given["media_type"] = _text(raw["media_type"]).lower()
    if "max_document_mb" in raw:
        given["max_document_bytes"] = int(raw["max_document_mb"] * MIB)
    return OcrSettings(document_field=field_path(raw["document_field"]), **given)


def _response_format(raw: Mapping[str, Any] | None) -> ResponseFormat:
    if not raw or raw["type"] != "json_schema":
        return ResponseFormat(type=raw["type"]) if raw else ResponseFormat()
    given = {key: raw[key] for key in ("name", "strict") if key in raw}
    return ResponseFormat(type="json_schema", schema=orjson.loads(raw["schema"]), **given)


def _limits(raw: Mapping[str, Any]) -> Limits:
    given = _values(raw, _LIMIT_VALUES, "limits")
    for size, target in (("max_buffer_mb", "max_buffer_bytes"), ("max_response_mb", "max_response_bytes")):
        if size in raw:
            given[target] = int(raw[size] * MIB)
    return Limits(**given)


def _values(raw: Mapping[str, Any], names: tuple[str, ...], *schema_path: str) -> dict[str, Any]:
    """The fields of `names` that the config gives, as the spec types them: an integer written 3.0
    passes the schema and is stored as 3, a number written 3 as 3.0."""
    properties = field_schema(*schema_path)["properties"]
    cast = {"integer": int, "number": float}
    return {
        name: cast.get(properties[name].get("type"), lambda value: value)(raw[name]) for name in names if name in raw
    }


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
