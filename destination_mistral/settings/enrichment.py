"""The typed settings of each enrichment mode (chat, embeddings with their chunking, moderation,
classification, OCR, none), built from a validated config. Their defaults are the spec fields' own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from destination_mistral.settings.spec_fields import defaults

MIB = 1024 * 1024
_CHAT = defaults("enrichment", "chat")
_JSON_SCHEMA = defaults("enrichment", "chat", "response_format", "json_schema")
_EMBEDDINGS = defaults("enrichment", "embeddings")
_MODERATION = defaults("enrichment", "moderation")
_CLASSIFIERS = defaults("enrichment", "classification")
_OCR = defaults("enrichment", "ocr")

DEFAULT_EMBED_MODEL = _EMBEDDINGS["model"]
DEFAULT_MODERATION_MODEL = _MODERATION["model"]
DEFAULT_OCR_MODEL = _OCR["model"]
# The context per input of Mistral's embedding models (docs model cards): the form's default.
EMBED_CONTEXT_TOKENS = _EMBEDDINGS["max_input_tokens"]
# Chat answers are capped when the user sets no max_tokens: an answer that runs on (a model looping
# until its context is full) costs tokens, time and memory for nothing. Capped again by the model's
# context, see chat_context_tokens.
CHAT_DEFAULT_MAX_TOKENS = 4096
# What the chat template adds around the messages' text (the start of the text, [INST] and [/INST] or
# the system prompt's marks, a few a message): the API counts them in the prompt, so a prompt cut to
# the context less the answer's room must leave these free as well.
CHAT_TEMPLATE_TOKENS = 16
# Context sizes of Mistral's chat models (docs model catalogue, NOTES section 8), by name prefix.
# A model not listed gets UNKNOWN_CHAT_CONTEXT: a prompt over the real context is refused by the
# server with a 400 naming the prompt, which becomes that record's error row anyway.
CHAT_CONTEXT_TOKENS = (
    ("mistral-large", 262_144),
    ("mistral-medium", 262_144),
    ("mistral-small", 262_144),
    ("ministral", 262_144),
    ("magistral", 131_072),
    ("devstral", 131_072),
    ("codestral", 131_072),
    ("pixtral", 131_072),
    ("open-mistral-nemo", 131_072),
    ("mistral-moderation", 131_072),
    ("open-mistral-7b", 32_768),
    ("open-mixtral-8x7b", 32_768),
    ("open-mixtral-8x22b", 65_536),
)
UNKNOWN_CHAT_CONTEXT = 131_072


def chat_context_tokens(model: str) -> int:
    return listed_chat_context(model) or UNKNOWN_CHAT_CONTEXT


def listed_chat_context(model: str) -> int | None:
    """The context of a model the table lists by its name's prefix, else None."""
    name = model.lower()
    for prefix, tokens in CHAT_CONTEXT_TOKENS:
        if name.startswith(prefix):
            return tokens
    return None


@dataclass(frozen=True)
class ResponseFormat:
    type: str = "text"  # text | json_object | json_schema
    name: str = _JSON_SCHEMA["name"]
    schema: Mapping[str, Any] | None = None
    strict: bool = _JSON_SCHEMA["strict"]

    @property
    def is_json(self) -> bool:
        return self.type != "text"

    def request_body(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.schema, "strict": self.strict},
        }


@dataclass(frozen=True)
class ChatSettings:
    model: str
    prompt_template: str
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    random_seed: int | None = None
    safe_prompt: bool = _CHAT["safe_prompt"]
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    max_input_tokens: int | None = None
    input_too_long: str = _CHAT["input_too_long"]
    mode: str = "chat"
    # The model's context as the API lists it (`max_context_length`), learnt when a sync starts
    # (sync.model_contexts); None: the table's size for the model's name.
    context_length: int | None = None

    @property
    def endpoint(self) -> str:
        return "chat/completions"

    @property
    def context_tokens(self) -> int:
        return self.context_length or chat_context_tokens(self.model)

    @property
    def effective_max_tokens(self) -> int:
        """The answer's cap sent with every request: the user's, else the default within the context."""
        if self.max_tokens:
            return self.max_tokens
        return min(CHAT_DEFAULT_MAX_TOKENS, self.context_tokens // 4)

    @property
    def prompt_room(self) -> int:
        """What the context leaves a prompt's text once the answer's room and the template's marks
        are set aside (below 1: no prompt fits, a config error when the sync starts)."""
        return self.context_tokens - self.effective_max_tokens - CHAT_TEMPLATE_TOKENS

    @property
    def prompt_token_limit(self) -> int:
        """The most tokens a prompt may have: the user's max_input_tokens, and the prompt's room."""
        room = max(1, self.prompt_room)
        return min(self.max_input_tokens, room) if self.max_input_tokens else room


_CHUNKING = defaults("enrichment", "embeddings", "chunking")


@dataclass(frozen=True)
class ChunkingSettings:
    """How a long text is split for embedding (enrich/chunking.py), and which of the record's fields
    each chunk's row carries."""

    max_tokens: int = _CHUNKING["max_tokens"]
    overlap_tokens: int = _CHUNKING["overlap_tokens"]
    split_on: str = _CHUNKING["split_on"]
    metadata_fields: tuple[str, ...] = ()


def default_overlap(max_tokens: int) -> int:
    """The overlap when the config gives none: the spec's default, or an eighth of a smaller chunk (the
    default would not fit in it)."""
    return min(_CHUNKING["overlap_tokens"], max_tokens // 8)


@dataclass(frozen=True)
class EmbeddingSettings:
    model: str = DEFAULT_EMBED_MODEL
    fields: tuple[tuple[str, ...], ...] = ()
    template: str | None = None
    output_dimension: int | None = None
    max_input_tokens: int = EMBED_CONTEXT_TOKENS
    input_too_long: str = _EMBEDDINGS["input_too_long"]
    chunking: ChunkingSettings | None = None  # None: one vector per record
    mode: str = "embeddings"

    @property
    def endpoint(self) -> str:
        return "embeddings"


FieldPath = tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ClassifierSource:
    """What moderation and classification read from a record: a text (`fields` or `template`) sent
    to their route, or a conversation (`conversation_field`) sent to its chat form."""

    fields: tuple[FieldPath, ...] = ()
    template: str | None = None
    conversation_field: FieldPath | None = None
    # One text in the spec for both modes (a YAML anchor): the same defaults.
    max_input_tokens: int = _CLASSIFIERS["max_input_tokens"]
    input_too_long: str = _CLASSIFIERS["input_too_long"]
    route: ClassVar[str]

    @property
    def endpoint(self) -> str:
        return f"chat/{self.route}" if self.conversation_field else self.route


@dataclass(frozen=True, kw_only=True)
class ModerationSettings(ClassifierSource):
    """Moderation's scores per category. The thresholds are applied when rows are written, never
    sent: the cached scores serve any."""

    model: str = DEFAULT_MODERATION_MODEL
    threshold: float = float(_MODERATION["threshold"])
    # (category, threshold) pairs that replace `threshold` for their category.
    category_thresholds: tuple[tuple[str, float], ...] = ()
    mode: str = "moderation"
    capability: ClassVar[str] = "moderation"
    route: ClassVar[str] = "moderations"

    def threshold_for(self, category: str) -> float:
        return dict(self.category_thresholds).get(category, self.threshold)

    def flagged_categories(self, scores: Mapping[str, float]) -> list[str]:
        """The categories whose score is above their threshold, in the answer's order."""
        return [name for name, score in scores.items() if score > self.threshold_for(name)]


@dataclass(frozen=True, kw_only=True)
class ClassificationSettings(ClassifierSource):
    """A classifier model's labels and scores per target."""

    model: str
    mode: str = "classification"
    capability: ClassVar[str] = "classification"
    route: ClassVar[str] = "classifications"


@dataclass(frozen=True)
class OcrSettings:
    """OCR of the document a record's field holds (a URL, a data URI, or raw base64 of `media_type`)."""

    document_field: FieldPath
    model: str = DEFAULT_OCR_MODEL
    media_type: str | None = None
    max_pages: int | None = None
    pages_per_request: int | None = None
    max_document_bytes: int = int(_OCR["max_document_mb"] * MIB)
    table_format: str | None = None
    extract_header: bool = _OCR["extract_header"]
    extract_footer: bool = _OCR["extract_footer"]
    mode: str = "ocr"
    capability: ClassVar[str] = "ocr"

    @property
    def endpoint(self) -> str:
        return "ocr"


@dataclass(frozen=True)
class NoEnrichment:
    mode: str = "none"
    model: str | None = None


Enrichment = ChatSettings | EmbeddingSettings | ModerationSettings | ClassificationSettings | OcrSettings | NoEnrichment
# The modes that send records to a classifier endpoint: one text (or conversation) per record, batched.
ClassifierSettings = ModerationSettings | ClassificationSettings
