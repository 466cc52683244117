"""destination-mistral's settings, from one source: the spec fields (spec_fields.yaml). `spec`
shows them, `check` and `write` validate every config against them with the same words
(parse_config), and the typed settings the rest of the code reads take their defaults from them.

- spec_fields: the YAML and the paths and defaults read from it
- validation: the config against the spec's JSON schema, each refusal in plain words
- rules: what the schema cannot state (templates, the response schema, one override per stream)
- outputs: the output block's rules (the /local root in the container, MotherDuck, PostgreSQL)
- conversion, typed, enrichment: the validated config as typed settings (the enrichment modes' in enrichment)
- parsing: parse_config, the four steps in order
- stream_fields: at the start of `write`, the record fields the settings name against each stream"""

from destination_mistral.settings.enrichment import (
    CHAT_DEFAULT_MAX_TOKENS,
    DEFAULT_EMBED_MODEL,
    EMBED_CONTEXT_TOKENS,
    ChatSettings,
    ChunkingSettings,
    ClassificationSettings,
    ClassifierSettings,
    EmbeddingSettings,
    Enrichment,
    ModerationSettings,
    NoEnrichment,
    OcrSettings,
    ResponseFormat,
    chat_context_tokens,
)
from destination_mistral.settings.key_masking import mask_error
from destination_mistral.settings.outputs import LOCAL_ROOT_ENV, local_root
from destination_mistral.settings.parsing import parse_config
from destination_mistral.settings.spec_fields import own_fields
from destination_mistral.settings.stream_fields import check_stream_fields
from destination_mistral.settings.typed import (
    Delivery,
    DestinationConfig,
    Limits,
    OutputSettings,
    PostgresSettings,
)

__all__ = [
    "CHAT_DEFAULT_MAX_TOKENS",
    "DEFAULT_EMBED_MODEL",
    "EMBED_CONTEXT_TOKENS",
    "ChatSettings",
    "ChunkingSettings",
    "ClassificationSettings",
    "ClassifierSettings",
    "Delivery",
    "DestinationConfig",
    "EmbeddingSettings",
    "Enrichment",
    "Limits",
    "ModerationSettings",
    "NoEnrichment",
    "OcrSettings",
    "OutputSettings",
    "PostgresSettings",
    "LOCAL_ROOT_ENV",
    "local_root",
    "mask_error",
    "ResponseFormat",
    "chat_context_tokens",
    "check_stream_fields",
    "own_fields",
    "parse_config",
]
