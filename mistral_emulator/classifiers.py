"""Moderation and classification (/v1/moderations, /v1/chat/moderations, /v1/classifications,
/v1/chat/classifications) as pure functions of the request body. Scores come from keywords in the text
plus a small stable background drawn from its hash, so a test can predict which label wins."""

from __future__ import annotations

import math
import uuid
from typing import Any

from . import validation
from .catalogue import Model
from .errors import invalid_model
from .inference import Admit, ModelLookup, message_text, resolve_model, seed_of
from .json_schema_answers import sentiment
from .tokens import count_tokens, words

MODERATION_CATEGORIES = {
    "sexual": ("sex", "sexual", "nude", "porn", "explicit"),
    "hate_and_discrimination": ("hate", "racist", "racism", "slur", "inferior", "discriminate"),
    "violence_and_threats": ("kill", "attack", "hurt", "threat", "weapon", "shoot", "bomb", "violence", "murder"),
    "dangerous_and_criminal_content": ("steal", "drugs", "hack", "explosive", "fraud", "illegal", "launder"),
    "selfharm": ("suicide", "selfharm", "cutting", "overdose"),
    "health": ("diagnosis", "symptom", "symptoms", "medication", "doctor", "disease", "treatment"),
    "financial": ("invest", "stock", "stocks", "loan", "crypto", "mortgage", "trading"),
    "law": ("lawsuit", "lawyer", "legal", "court", "contract", "sue"),
    "pii": ("ssn", "passport", "address", "phone", "email", "password", "iban"),
}

# Keywords of the seeded classifier's labels (catalogue.CLASSIFIER_FAMILY). The sentiment target uses the
# same word lists as the JSON answers of chat, so both agree on a text's mood.
LABEL_KEYWORDS = {
    "billing": ("invoice", "bill", "billing", "billed", "payment", "refund", "charge", "charged", "price"),
    "support": ("help", "error", "broken", "issue", "problem", "bug", "crash", "support", "fix", "login"),
    "sales": ("buy", "purchase", "demo", "quote", "pricing", "plan", "upgrade", "sales", "discount", "trial"),
}
# Logit added per keyword hit (and for the sentiment the text reads as): enough for one hit to win.
_HIT_WEIGHT = 3.0


def _background(*parts: Any) -> float:
    """A stable value in [0, 1) for the parts."""
    return (seed_of(*parts) % 10_000) / 10_000


def moderation_scores(text: str) -> dict[str, float]:
    tokens = set(words(text))
    scores = {}
    for name, keys in MODERATION_CATEGORIES.items():
        hits = len(tokens.intersection(keys))
        base = (seed_of(name, text) % 1000) / 200_000  # a small, stable background score
        scores[name] = min(0.999, base + (0.55 + 0.2 * (hits - 1) if hits else 0.0))
    return scores


def _moderation_result(text: str) -> dict:
    scores = moderation_scores(text)
    return {"categories": {k: v > 0.5 for k, v in scores.items()}, "category_scores": scores}


def _label_hits(label: str, tokens: list[str], mood: str) -> int:
    if label in LABEL_KEYWORDS:
        return sum(t in LABEL_KEYWORDS[label] for t in tokens)
    return int(label == mood)


def target_scores(model_id: str, target: str, labels: tuple[str, ...], text: str) -> dict[str, float]:
    """A softmax over the labels: keyword hits dominate, the background breaks ties, scores sum to 1."""
    tokens = words(text)
    mood = sentiment(text)
    logits = [
        _HIT_WEIGHT * _label_hits(label, tokens, mood) + _background(model_id, target, label, text) for label in labels
    ]
    top = max(logits)
    weights = [math.exp(v - top) for v in logits]
    total = sum(weights)
    return {label: w / total for label, w in zip(labels, weights, strict=True)}


def _classification_result(model: Model, text: str) -> dict:
    targets = model.family.classifier_targets
    if not targets:
        # A moderation model classifies into its moderation categories, as one multi-label target.
        return {"moderation_categories": {"scores": moderation_scores(text)}}
    return {name: {"scores": target_scores(model.id, name, labels, text)} for name, labels in targets}


def _conversation_text(messages: list) -> str:
    return " ".join(message_text(m.get("content")) for m in messages)


def _texts(body: dict, kind: str) -> list[str]:
    raw = body["input"]
    if kind == "text":
        return [raw] if isinstance(raw, str) else raw
    if kind == "chat_moderation":
        # A list of conversations, or one conversation (an empty list is no conversation at all).
        conversations = raw if all(isinstance(v, list) for v in raw) else [raw]
        return [_conversation_text(conv) for conv in conversations]
    requests = raw if isinstance(raw, list) else [raw]
    return [_conversation_text(r["messages"]) for r in requests]


def _answer(body: Any, lookup: ModelLookup, capability: str, kind: str, admit: Admit) -> tuple[Model, list, int]:
    body = validation.require_object(body)
    if kind == "chat_classification":
        validation.check_chat_classification(body)
    else:
        validation.check_classification(body, chat=kind == "chat_moderation")
    model = resolve_model(lookup, body["model"])
    if not model.can(capability):
        raise invalid_model(400, body["model"])
    texts = _texts(body, kind)
    tokens = sum(count_tokens(t) for t in texts)
    if admit is not None:
        admit(tokens)
    return model, texts, tokens


def moderation(body: Any, lookup: ModelLookup, chat: bool, admit: Admit = None) -> tuple[dict, int]:
    """(ModerationResponse, the prompt tokens it cost)."""
    _, texts, tokens = _answer(body, lookup, "moderation", "chat_moderation" if chat else "text", admit)
    results = [_moderation_result(t) for t in texts]
    return {"id": uuid.uuid4().hex, "model": body["model"], "results": results}, tokens


def classification(body: Any, lookup: ModelLookup, chat: bool, admit: Admit = None) -> tuple[dict, int]:
    """(ClassificationResponse, the prompt tokens it cost). One result per input text or conversation,
    mapping each of the model's targets to its label scores."""
    model, texts, tokens = _answer(body, lookup, "classification", "chat_classification" if chat else "text", admit)
    results = [_classification_result(model, t) for t in texts]
    return {"id": uuid.uuid4().hex, "model": body["model"], "results": results}, tokens
