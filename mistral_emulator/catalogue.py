"""The model catalogue (NOTES §8). Each alias is its own card whose `aliases` lists its siblings, as
the real `/v1/models` does."""

from __future__ import annotations

from dataclasses import dataclass, field

CAPABILITY_NAMES = (
    "completion_chat",
    "function_calling",
    "reasoning",
    "completion_fim",
    "fine_tuning",
    "vision",
    "ocr",
    "classification",
    "moderation",
    "audio",
    "audio_transcription",
    "audio_transcription_realtime",
    "audio_speech",
    "unified_resources",
)

CHAT = frozenset({"completion_chat", "function_calling"})


@dataclass(frozen=True)
class ModelFamily:
    ids: tuple[str, ...]
    name: str
    description: str
    capabilities: frozenset[str]
    max_context_length: int
    created: int
    default_model_temperature: float | None = None
    deprecation: str | None = None
    deprecation_replacement_model: str | None = None
    # Embedding models only: default vector size and the largest `output_dimension` accepted
    # (equal for models whose dimension is fixed).
    embedding_dimension: int | None = None
    max_embedding_dimension: int | None = None
    # Classifier models only: each target's name and its labels, in the order scores are listed.
    classifier_targets: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Model:
    id: str
    family: ModelFamily
    aliases: tuple[str, ...] = field(default=())
    # Set for fine-tuned models.
    job: str | None = None
    root: str | None = None

    def can(self, capability: str) -> bool:
        return capability in self.family.capabilities

    @property
    def is_embedding(self) -> bool:
        return self.family.embedding_dimension is not None

    def card(self) -> dict:
        caps = {name: name in self.family.capabilities for name in CAPABILITY_NAMES}
        card = {
            "id": self.id,
            "object": "model",
            "created": self.family.created,
            "owned_by": "mistralai",
            "capabilities": caps,
            "name": self.family.name,
            "description": self.family.description,
            "max_context_length": self.family.max_context_length,
            "aliases": list(self.aliases),
            "deprecation": self.family.deprecation,
            "deprecation_replacement_model": self.family.deprecation_replacement_model,
            "default_model_temperature": self.family.default_model_temperature,
            "type": "base",
        }
        if self.job is not None:
            card.update(type="fine-tuned", job=self.job, root=self.root, archived=False, owned_by="emulator-org")
        return card


_K = 1024
FAMILIES = (
    ModelFamily(
        ("mistral-large-2512", "mistral-large-latest"),
        "mistral-large-2512",
        "Our top-tier large model for high-complexity tasks.",
        CHAT | {"vision", "fine_tuning"},
        256 * _K,
        1764806400,
        0.3,
    ),
    ModelFamily(
        ("mistral-medium-3-5", "mistral-medium-3", "mistral-medium-latest"),
        "mistral-medium-3-5",
        "Frontier-class multimodal model.",
        CHAT | {"vision"},
        256 * _K,
        1767225600,
        0.3,
    ),
    ModelFamily(
        ("mistral-small-2603", "mistral-small-latest"),
        "mistral-small-2603",
        "Efficient small model for everyday tasks.",
        CHAT | {"vision", "fine_tuning"},
        256 * _K,
        1772323200,
        0.3,
    ),
    ModelFamily(
        ("ministral-3b-2512", "ministral-3b-latest"),
        "ministral-3b-2512",
        "Edge model, 3B parameters.",
        CHAT | {"vision"},
        256 * _K,
        1764806400,
        0.3,
    ),
    ModelFamily(
        ("ministral-8b-2512", "ministral-8b-latest"),
        "ministral-8b-2512",
        "Edge model, 8B parameters.",
        CHAT | {"vision"},
        256 * _K,
        1764806400,
        0.3,
    ),
    ModelFamily(
        ("ministral-14b-2512", "ministral-14b-latest"),
        "ministral-14b-2512",
        "Edge model, 14B parameters.",
        CHAT | {"vision"},
        256 * _K,
        1764806400,
        0.3,
    ),
    ModelFamily(
        ("codestral-2508", "codestral-latest"),
        "codestral-2508",
        "Code generation model.",
        CHAT | {"completion_fim", "fine_tuning"},
        128 * _K,
        1754006400,
        0.3,
    ),
    ModelFamily(
        ("magistral-medium-2509",),
        "magistral-medium-2509",
        "Reasoning model.",
        CHAT | {"reasoning", "vision"},
        128 * _K,
        1758240000,
        0.7,
        "2026-06-30T00:00:00Z",
        "mistral-medium-latest",
    ),
    ModelFamily(
        ("mistral-small-2506",),
        "mistral-small-2506",
        "Small model, June 2025.",
        CHAT | {"vision"},
        128 * _K,
        1750204800,
        0.3,
        "2026-05-31T00:00:00Z",
        "mistral-small-latest",
    ),
    ModelFamily(
        ("open-mistral-nemo", "open-mistral-nemo-2407"),
        "open-mistral-nemo",
        "Multilingual 12B model.",
        CHAT | {"fine_tuning"},
        128 * _K,
        1721001600,
        0.3,
        "2026-03-31T00:00:00Z",
        "ministral-14b-latest",
    ),
    ModelFamily(
        ("mistral-embed-2312", "mistral-embed"),
        "mistral-embed-2312",
        "Text embedding model, 1024 dimensions.",
        frozenset(),
        8 * _K,
        1702339200,
        embedding_dimension=1024,
        max_embedding_dimension=1024,
    ),
    ModelFamily(
        ("codestral-embed-2505", "codestral-embed"),
        "codestral-embed-2505",
        "Code embedding model, up to 3072 dimensions.",
        frozenset(),
        8 * _K,
        1748476800,
        embedding_dimension=1536,
        max_embedding_dimension=3072,
    ),
    ModelFamily(
        ("mistral-moderation-2603", "mistral-moderation-latest"),
        "mistral-moderation-2603",
        "Content moderation classifier.",
        frozenset({"moderation", "classification"}),
        128 * _K,
        1772323200,
    ),
    ModelFamily(
        ("mistral-moderation-2411",),
        "mistral-moderation-2411",
        "Content moderation classifier.",
        frozenset({"moderation", "classification"}),
        8 * _K,
        1731542400,
        None,
        "2026-06-30T00:00:00Z",
        "mistral-moderation-latest",
    ),
    ModelFamily(
        ("mistral-ocr-2512", "mistral-ocr-4-0"),
        "mistral-ocr-2512",
        "Document OCR model.",
        frozenset({"ocr"}),
        32 * _K,
        1764806400,
    ),
    ModelFamily(
        ("mistral-ocr-4-1", "mistral-ocr-4", "mistral-ocr-latest"),
        "mistral-ocr-4-1",
        "Document OCR model (preview).",
        frozenset({"ocr"}),
        32 * _K,
        1772323200,
    ),
    ModelFamily(
        ("voxtral-small-2507", "voxtral-small-latest"),
        "voxtral-small-2507",
        "Speech understanding model.",
        CHAT | {"audio", "audio_transcription"},
        32 * _K,
        1752537600,
        0.2,
    ),
    ModelFamily(
        ("voxtral-mini-2602", "voxtral-mini-latest"),
        "voxtral-mini-2602",
        "Transcription model.",
        frozenset({"audio_transcription", "audio_transcription_realtime"}),
        32 * _K,
        1770076800,
    ),
    ModelFamily(
        ("voxtral-mini-tts-2603",),
        "voxtral-mini-tts-2603",
        "Text to speech model.",
        frozenset({"audio_speech"}),
        8 * _K,
        1772323200,
    ),
)

# Fine-tuned models report this family: a chat model with the old default context.
FINE_TUNED_FAMILY = ModelFamily((), "fine-tuned", "Fine-tuned model.", CHAT, 32 * _K, 1715644800, 0.3)

# A classifier trained with the classifier factory (a fine-tuning job of type "classifier"). Its targets
# are the ones the seeded classifier jobs train ("intent") plus a sentiment target, so a test can assert
# on labels a reader would expect from the text (see classifiers.py for the scoring).
CLASSIFIER_FAMILY = ModelFamily(
    (),
    "fine-tuned-classifier",
    "Fine-tuned classifier.",
    frozenset({"classification"}),
    32 * _K,
    1767225600,
    classifier_targets=(
        ("intent", ("billing", "support", "sales")),
        ("sentiment", ("positive", "negative", "neutral")),
    ),
)
CLASSIFIER_MODEL_ID = "ft:classifier:ministral-3b-latest:6c1a2f9e:20260101:4b7d0e21"


def base_models() -> list[Model]:
    models = []
    for family in FAMILIES:
        for model_id in family.ids:
            siblings = tuple(i for i in family.ids if i != model_id)
            models.append(Model(model_id, family, siblings))
    return models


def fine_tuned_classifiers() -> list[Model]:
    """The seeded classifier models; fine-tuned cards, so they carry a job id and a root model."""
    return [
        Model(
            CLASSIFIER_MODEL_ID,
            CLASSIFIER_FAMILY,
            job="6c1a2f9e-0b3d-4e5f-9a8b-7c6d5e4f4b7d",
            root="ministral-3b-latest",
        )
    ]
