"""The destination's settings, parsed once and validated: every user mistake becomes a config error
that names the field and the fix, before a single record is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

import orjson

from mistral_connection import MistralConnection
from mistral_connection.errors import config_error

DEFAULT_EMBED_MODEL = "mistral-embed"
# The context per input of Mistral's embedding models (docs model cards).
EMBED_CONTEXT_TOKENS = 8192
# Chat answers are capped when the user sets no max_tokens: an answer that runs on (a model looping
# until its context is full) costs tokens, time and memory for nothing. Capped again by the model's
# context, see chat_context_tokens.
CHAT_DEFAULT_MAX_TOKENS = 4096
# Context sizes of Mistral's chat models (docs model catalogue, NOTES section 8), by name prefix.
# A model not listed gets UNKNOWN_CHAT_CONTEXT: a prompt over the real context is refused by the
# server with a 400 naming the prompt, which becomes that record's error row anyway.
CHAT_CONTEXT_TOKENS = (
    ("mistral-large", 262_144), ("mistral-medium", 262_144), ("mistral-small", 262_144), ("ministral", 262_144),
    ("magistral", 131_072), ("devstral", 131_072), ("codestral", 131_072), ("pixtral", 131_072),
    ("open-mistral-nemo", 131_072), ("mistral-moderation", 131_072), ("open-mistral-7b", 32_768),
    ("open-mixtral-8x7b", 32_768), ("open-mixtral-8x22b", 65_536),
)
UNKNOWN_CHAT_CONTEXT = 131_072


def chat_context_tokens(model: str) -> int:
    name = model.lower()
    for prefix, tokens in CHAT_CONTEXT_TOKENS:
        if name.startswith(prefix):
            return tokens
    return UNKNOWN_CHAT_CONTEXT


@dataclass(frozen=True)
class ResponseFormat:
    type: str = "text"  # text | json_object | json_schema
    name: str = "extraction"
    schema: Mapping[str, Any] | None = None
    strict: bool = True

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
    safe_prompt: bool = False
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    max_input_tokens: int | None = None
    input_too_long: str = "error"
    mode: str = "chat"

    @property
    def endpoint(self) -> str:
        return "chat/completions"

    @property
    def context_tokens(self) -> int:
        return chat_context_tokens(self.model)

    @property
    def effective_max_tokens(self) -> int:
        """The answer's cap sent with every request: the user's, else the default within the context."""
        if self.max_tokens:
            return self.max_tokens
        return min(CHAT_DEFAULT_MAX_TOKENS, self.context_tokens // 4)

    @property
    def prompt_token_limit(self) -> int:
        """The most tokens a prompt may have: the user's max_input_tokens, and what the context
        leaves once the answer's room is set aside."""
        room = max(1, self.context_tokens - self.effective_max_tokens)
        return min(self.max_input_tokens, room) if self.max_input_tokens else room


@dataclass(frozen=True)
class EmbeddingSettings:
    model: str = DEFAULT_EMBED_MODEL
    fields: tuple[tuple[str, ...], ...] = ()
    template: str | None = None
    output_dimension: int | None = None
    max_input_tokens: int = EMBED_CONTEXT_TOKENS
    input_too_long: str = "truncate"
    mode: str = "embeddings"

    @property
    def endpoint(self) -> str:
        return "embeddings"


@dataclass(frozen=True)
class NoEnrichment:
    mode: str = "none"
    model: str | None = None


Enrichment = Union[ChatSettings, EmbeddingSettings, NoEnrichment]


@dataclass(frozen=True)
class OutputSettings:
    kind: str  # duckdb | jsonl
    path: Path  # the DuckDB file, or the JSONL directory
    schema: str = "main"


@dataclass(frozen=True)
class Limits:
    max_concurrent_requests: int = 16
    requests_per_second: float | None = None
    # A cap on the tokens sent per minute (the server's own limit is learned from its headers).
    tokens_per_minute: int | None = None
    max_retries: int = 5
    # How long a failing request is retried, and how long 429s are waited on with nothing succeeding.
    max_retry_seconds: float = 300.0
    timeout_seconds: float = 120.0
    max_buffer_bytes: int = 64 * 1024 * 1024
    # The largest answer read: beyond it the answer is a service failure, not a memory spike.
    max_response_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    mode: str = "online"  # online | batch | auto
    auto_threshold: int = 10_000
    requests_per_job: int = 10_000
    poll_max_seconds: float = 30.0


@dataclass(frozen=True)
class DestinationConfig:
    connection: MistralConnection
    enrichment: Enrichment
    overrides: Mapping[str, Enrichment]
    output: OutputSettings
    on_error: str = "record"
    limits: Limits = field(default_factory=Limits)
    cache_enabled: bool = True
    delivery: Delivery = field(default_factory=Delivery)

    def enrichment_for(self, stream_name: str) -> Enrichment:
        return self.overrides.get(stream_name, self.enrichment)

    def all_enrichments(self) -> list[Enrichment]:
        return [self.enrichment, *self.overrides.values()]


def _number(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
            integer: bool = False, exclusive_min: bool = False) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        kind = "a whole number" if integer else "a number"
        raise config_error(f"`{name}` must be {kind}, got {value!r}.")
    if minimum is not None and (value <= minimum if exclusive_min else value < minimum):
        raise config_error(f"`{name}` must be {'above' if exclusive_min else 'at least'} {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise config_error(f"`{name}` must be at most {maximum}, got {value}.")
    return int(value) if integer else float(value)


def _choice(value: Any, name: str, allowed: tuple[str, ...], default: str) -> str:
    if value in (None, ""):
        return default
    if value not in allowed:
        raise config_error(f"`{name}` must be one of {', '.join(allowed)}, got {value!r}.")
    return str(value)


def _parse_response_format(raw: Any, where: str) -> ResponseFormat:
    if raw in (None, ""):
        return ResponseFormat()
    if isinstance(raw, str):
        raw = {"type": raw}
    kind = _choice(raw.get("type"), f"{where}.type", ("text", "json_object", "json_schema"), "text")
    if kind != "json_schema":
        return ResponseFormat(type=kind)
    schema = raw.get("schema")
    if isinstance(schema, str):
        try:
            schema = orjson.loads(schema)
        except orjson.JSONDecodeError as error:
            raise config_error(f"`{where}.schema` is not valid JSON ({error}): paste the schema as JSON text.") from None
    if not isinstance(schema, dict) or not schema:
        raise config_error(f"`{where}.schema` must be a JSON schema object, e.g. {{\"type\": \"object\", \"properties\": {{...}}}}.")
    try:
        import jsonschema

        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        raise config_error(f"`{where}.schema` is not a valid JSON schema: {error.message}.") from None
    name = str(raw.get("name") or "extraction")
    return ResponseFormat(type="json_schema", name=name, schema=schema, strict=bool(raw.get("strict", True)))


def _field_paths(raw: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if raw in (None, ""):
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) and p.strip() for p in raw):
        raise config_error(f"`{where}` must be a list of field paths such as [\"title\", \"review.text\"].")
    return tuple(tuple(part for part in p.strip().split(".")) for p in raw)


def parse_enrichment(raw: Any, where: str, default_model: str) -> Enrichment:
    from destination_mistral.templates import compile_template  # late: keeps config importable alone

    if not isinstance(raw, Mapping):
        raise config_error(f"`{where}` is missing: choose a mode (chat, embeddings or none).")
    mode = _choice(raw.get("mode"), f"{where}.mode", ("chat", "embeddings", "none"), "")
    if not mode:
        raise config_error(f"`{where}.mode` is missing: set it to chat, embeddings or none.")
    if mode == "none":
        return NoEnrichment()
    if mode == "chat":
        template = raw.get("prompt_template")
        if not isinstance(template, str) or not template.strip():
            raise config_error(f"`{where}.prompt_template` is empty: write the prompt, e.g. \"Summarise: {{{{ review }}}}\".")
        compile_template(template, f"{where}.prompt_template")
        system = raw.get("system_prompt") or None
        if system is not None:
            compile_template(system, f"{where}.system_prompt")
        return ChatSettings(
            model=str(raw.get("model") or default_model).strip(),
            prompt_template=template,
            system_prompt=system,
            temperature=_number(raw.get("temperature"), f"{where}.temperature", minimum=0, maximum=1.5),
            top_p=_number(raw.get("top_p"), f"{where}.top_p", minimum=0, maximum=1, exclusive_min=True),
            max_tokens=_number(raw.get("max_tokens"), f"{where}.max_tokens", minimum=1, integer=True),
            random_seed=_number(raw.get("random_seed"), f"{where}.random_seed", minimum=0, integer=True),
            safe_prompt=bool(raw.get("safe_prompt", False)),
            response_format=_parse_response_format(raw.get("response_format"), f"{where}.response_format"),
            max_input_tokens=_number(raw.get("max_input_tokens"), f"{where}.max_input_tokens", minimum=1, integer=True),
            input_too_long=_choice(raw.get("input_too_long"), f"{where}.input_too_long", ("truncate", "error"), "error"),
        )
    fields = _field_paths(raw.get("fields"), f"{where}.fields")
    template = raw.get("template") or None
    if bool(fields) == bool(template):
        raise config_error(
            f"`{where}`: give either `fields` (a list of field paths) or `template` (a Jinja template) for the text to embed, not "
            + ("both." if fields else "neither.")
        )
    if template:
        compile_template(template, f"{where}.template")
    return EmbeddingSettings(
        model=str(raw.get("model") or DEFAULT_EMBED_MODEL).strip(),
        fields=fields,
        template=template,
        output_dimension=_number(raw.get("output_dimension"), f"{where}.output_dimension", minimum=1, integer=True),
        max_input_tokens=_number(raw.get("max_input_tokens"), f"{where}.max_input_tokens", minimum=1, integer=True)
        or EMBED_CONTEXT_TOKENS,
        input_too_long=_choice(raw.get("input_too_long"), f"{where}.input_too_long", ("truncate", "error"), "truncate"),
    )


def _parse_output(raw: Any) -> OutputSettings:
    if not isinstance(raw, Mapping):
        raise config_error("`output` is missing: choose duckdb (with a file path) or jsonl (with a directory).")
    kind = _choice(raw.get("type"), "output.type", ("duckdb", "jsonl"), "duckdb")
    key = "path" if kind == "duckdb" else "directory"
    location = raw.get(key)
    if not isinstance(location, str) or not location.strip():
        raise config_error(f"`output.{key}` is empty: give the {'DuckDB file' if kind == 'duckdb' else 'directory'} to write to.")
    if kind == "duckdb" and location.strip().startswith("md:"):
        raise config_error("`output.path` points to MotherDuck; only a local DuckDB file is supported.")
    schema = str(raw.get("schema") or "main").strip()
    return OutputSettings(kind=kind, path=Path(location.strip()).expanduser(), schema=schema)


def _parse_limits(raw: Any) -> Limits:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise config_error("`limits` must be an object.")
    defaults = Limits()
    mb = _number(raw.get("max_buffer_mb"), "limits.max_buffer_mb", minimum=0, exclusive_min=True)
    response_mb = _number(raw.get("max_response_mb"), "limits.max_response_mb", minimum=0, exclusive_min=True)
    return Limits(
        max_concurrent_requests=_number(raw.get("max_concurrent_requests"), "limits.max_concurrent_requests", minimum=1, maximum=256, integer=True)
        or defaults.max_concurrent_requests,
        requests_per_second=_number(raw.get("requests_per_second"), "limits.requests_per_second", minimum=0, exclusive_min=True),
        tokens_per_minute=_number(raw.get("tokens_per_minute"), "limits.tokens_per_minute", minimum=1, integer=True),
        max_retries=_number(raw.get("max_retries"), "limits.max_retries", minimum=0, maximum=20, integer=True)
        if raw.get("max_retries") is not None
        else defaults.max_retries,
        max_retry_seconds=_number(raw.get("max_retry_seconds"), "limits.max_retry_seconds", minimum=0)
        if raw.get("max_retry_seconds") is not None
        else defaults.max_retry_seconds,
        timeout_seconds=_number(raw.get("timeout_seconds"), "limits.timeout_seconds", minimum=0, exclusive_min=True)
        or defaults.timeout_seconds,
        max_buffer_bytes=int(mb * 1024 * 1024) if mb else defaults.max_buffer_bytes,
        max_response_bytes=int(response_mb * 1024 * 1024) if response_mb else defaults.max_response_bytes,
    )


def _parse_delivery(raw: Any) -> Delivery:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise config_error("`delivery` must be an object such as {\"mode\": \"online\"}.")
    defaults = Delivery()
    threshold = _number(raw.get("auto_threshold"), "delivery.auto_threshold", minimum=0, integer=True)
    per_job = _number(raw.get("requests_per_job"), "delivery.requests_per_job", minimum=1, maximum=1_000_000, integer=True)
    poll = _number(raw.get("poll_max_seconds"), "delivery.poll_max_seconds", minimum=0, exclusive_min=True)
    return Delivery(
        mode=_choice(raw.get("mode"), "delivery.mode", ("online", "batch", "auto"), defaults.mode),
        auto_threshold=defaults.auto_threshold if threshold is None else threshold,
        requests_per_job=per_job or defaults.requests_per_job,
        poll_max_seconds=poll or defaults.poll_max_seconds,
    )


def parse_config(config: Mapping[str, Any]) -> DestinationConfig:
    connection = MistralConnection.from_config(config)
    enrichment = parse_enrichment(config.get("enrichment"), "enrichment", connection.model)
    overrides: dict[str, Enrichment] = {}
    for index, item in enumerate(config.get("stream_overrides") or []):
        name = (item or {}).get("stream_name")
        if not isinstance(name, str) or not name.strip():
            raise config_error(f"`stream_overrides[{index}].stream_name` is empty: name the stream it applies to.")
        if name in overrides:
            raise config_error(f"`stream_overrides` names stream {name!r} twice: keep one entry per stream.")
        overrides[name] = parse_enrichment(item.get("enrichment"), f"stream_overrides[{index}].enrichment", connection.model)
    cache = config.get("cache") or {}
    return DestinationConfig(
        connection=connection,
        enrichment=enrichment,
        overrides=overrides,
        output=_parse_output(config.get("output")),
        on_error=_choice(config.get("on_error"), "on_error", ("record", "fail"), "record"),
        limits=_parse_limits(config.get("limits")),
        cache_enabled=bool(cache.get("enabled", True)) if isinstance(cache, Mapping) else True,
        delivery=_parse_delivery(config.get("delivery")),
    )
