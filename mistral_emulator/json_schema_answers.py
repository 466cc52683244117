"""Answers for `response_format: json_schema`: a value generated from the schema that validates against
it, with content taken from the prompt where that is easy (sentiment labels, summaries, names), so a
pipeline's structured-output columns look plausible in a demo."""

from __future__ import annotations

import random
import re
from typing import Any

from .tokens import words

POSITIVE_WORDS = frozenset(
    "good great excellent love loved lovely amazing awesome happy best fantastic wonderful perfect like liked "
    "enjoy enjoyed recommend nice pleased delighted superb brilliant helpful glad outstanding bright sharp "
    "readable comfortable solid reliable crisp clear smooth quick sturdy impressive".split()
)
NEGATIVE_WORDS = frozenset(
    "bad terrible awful hate hated worst poor horrible disappointing disappointed broken slow angry sad "
    "useless refund problem problems issue issues fail failed failure never rude late dirty drains drain "
    "barely crushed damaged thin tinny cracked noisy dim flimsy weak overheats missing lost".split()
)

_TEXTUAL_KEYS = (
    "summary",
    "description",
    "text",
    "explanation",
    "reason",
    "answer",
    "content",
    "comment",
    "title",
    "headline",
    "topic",
    "subject",
    "message",
    "note",
)
_FILLER = "the quick answer covers the main point of the request in a few plain words".split()
_MAX_DEPTH = 12


_RATING = re.compile(r"\b([0-5])\s*/\s*5\b")


def sentiment(text: str) -> str:
    # A star rating in the prompt ("rated 2/5") is the strongest signal a reader would use too.
    rating = _RATING.search(text)
    if rating:
        stars = int(rating.group(1))
        return "positive" if stars >= 4 else "negative" if stars <= 2 else "neutral"
    tokens = words(text)
    score = sum(t in POSITIVE_WORDS for t in tokens) - sum(t in NEGATIVE_WORDS for t in tokens)
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


class _Generator:
    def __init__(self, root: dict, text: str, rng: random.Random):
        self.root = root
        self.text = text
        self.rng = rng
        self.keywords = [w for w in words(text) if len(w) > 3] or _FILLER
        self.mood = sentiment(text)

    def resolve(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            if not ref.startswith("#"):
                return {}
            target: Any = self.root
            for part in [p for p in ref[1:].split("/") if p]:
                target = target[part.replace("~1", "/").replace("~0", "~")]
            # Siblings of $ref (2020-12 allows them) still constrain the value.
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra else target
            seen += 1
        return schema

    def value(self, schema: Any, key: str | None = None, depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if schema is True or schema is None or schema == {}:
            return self.string({}, key)
        if schema is False:
            return None
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.choose_enum(schema["enum"], key)
        if "allOf" in schema:
            merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part)
                for k, v in part.items():
                    if k == "properties":
                        merged.setdefault("properties", {}).update(v)
                    elif k == "required":
                        merged["required"] = list(dict.fromkeys(merged.get("required", []) + list(v)))
                    else:
                        merged.setdefault(k, v)
            return self.value(merged, key, depth)
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                options = [self.resolve(o) for o in schema[combinator]]
                non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
                chosen = (non_null or options)[0]
                if depth >= _MAX_DEPTH and len(non_null) < len(options):
                    return None
                base = {k: v for k, v in schema.items() if k != combinator}
                return self.value({**base, **chosen} if isinstance(chosen, dict) else chosen, key, depth)
        type_ = schema.get("type")
        if isinstance(type_, list):
            non_null = [t for t in type_ if t != "null"]
            if depth >= _MAX_DEPTH and "null" in type_:
                return None
            type_ = non_null[0] if non_null else "null"
        if type_ is None:
            type_ = (
                "object"
                if "properties" in schema
                else "array"
                if "items" in schema
                else "number"
                if "minimum" in schema or "maximum" in schema
                else "string"
            )
        if type_ == "object":
            return self.object(schema, depth)
        if type_ == "array":
            return self.array(schema, key, depth)
        if type_ == "string":
            return self.string(schema, key)
        if type_ == "integer":
            return self.number(schema, key, integer=True)
        if type_ == "number":
            return self.number(schema, key, integer=False)
        if type_ == "boolean":
            if key and any(k in key.lower() for k in ("positive", "good", "success")):
                return self.mood == "positive"
            if key and any(k in key.lower() for k in ("negative", "complaint", "toxic", "spam")):
                return self.mood == "negative"
            return self.rng.random() < 0.5
        return None

    def choose_enum(self, options: list, key: str | None) -> Any:
        lowered = {str(o).lower(): o for o in options}
        if self.mood in lowered:
            return lowered[self.mood]
        for label, candidates in (
            ("positive", ("pos", "good", "happy", "yes")),
            ("negative", ("neg", "bad", "unhappy", "no")),
            ("neutral", ("neu", "mixed", "none")),
        ):
            if self.mood == label:
                for c in candidates:
                    if c in lowered:
                        return lowered[c]
        for word in self.keywords:
            if word in lowered:
                return lowered[word]
        return options[self.rng.randrange(len(options))]

    def object(self, schema: dict, depth: int) -> dict:
        props: dict = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        out: dict = {}
        for name, sub in props.items():
            if depth >= _MAX_DEPTH and name not in required:
                continue
            out[name] = self.value(sub, name, depth + 1)
        for name in required:
            if name not in out:
                extra = schema.get("additionalProperties")
                out[name] = self.value(extra if isinstance(extra, dict) else {}, name, depth + 1)
        min_props = schema.get("minProperties", 0)
        extra = schema.get("additionalProperties", True)
        i = 0
        while len(out) < min_props and extra is not False:
            out[f"key_{i}"] = self.value(extra if isinstance(extra, dict) else {"type": "string"}, None, depth + 1)
            i += 1
        return out

    def array(self, schema: dict, key: str | None, depth: int) -> list:
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {})
        lo = schema.get("minItems", 0)
        hi = schema.get("maxItems")
        count = max(lo, len(prefix), 0 if depth >= _MAX_DEPTH else 2)
        if hi is not None:
            count = min(count, hi)
        count = max(count, lo)
        out = [self.value(prefix[i], key, depth + 1) for i in range(min(count, len(prefix)))]
        labels = self._mentioned_labels(self.resolve(items)) if not prefix else []
        if labels:
            # A list of labels (topics, tags) names those the text mentions, each once.
            out = labels[: hi if hi is not None else len(labels)]
            count = max(lo, len(out))
        unique = schema.get("uniqueItems", False)
        attempts = 0
        while len(out) < count and attempts < count * 20 + 20:
            item = self.value(items if items is not False else {}, _singular(key), depth + 1)
            attempts += 1
            if unique and item in out:
                item = self._vary(item, len(out) + attempts)
                if item in out:
                    continue
            out.append(item)
        return out

    def _mentioned_labels(self, items: Any) -> list[str]:
        enum = items.get("enum") if isinstance(items, dict) else None
        if not enum or not all(isinstance(v, str) for v in enum):
            return []
        mentioned = set(words(self.text))
        return [v for v in enum if v.lower() in mentioned or v.lower().rstrip("s") in mentioned]

    def _vary(self, item: Any, n: int) -> Any:
        if isinstance(item, str):
            return f"{item} {n}"
        if isinstance(item, bool):
            return not item
        if isinstance(item, (int, float)):
            return item + n
        return item

    def string(self, schema: dict, key: str | None) -> str:
        fmt = schema.get("format")
        r = self.rng
        if fmt == "date-time":
            value = (
                f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00Z"
            )
        elif fmt == "date":
            value = f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        elif fmt == "time":
            value = f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00"
        elif fmt == "email":
            value = f"{self.keywords[0][:12]}@example.com"
        elif fmt == "uuid":
            value = (
                f"{r.getrandbits(32):08x}-{r.getrandbits(16):04x}-4{r.getrandbits(12):03x}-"
                f"8{r.getrandbits(12):03x}-{r.getrandbits(48):012x}"
            )
        elif fmt in ("uri", "url", "iri"):
            value = f"https://example.com/{self.keywords[0][:20]}"
        elif fmt in ("ipv4",):
            value = f"192.0.2.{r.randint(1, 254)}"
        else:
            value = self.text_for(key)
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength")
        if hi is not None and len(value) > hi:
            value = value[:hi].rstrip() or value[:hi]
        while len(value) < lo:
            value += ("" if not value else " ") + self.keywords[len(value) % len(self.keywords)]
            if hi is not None:
                value = value[:hi]
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            value = _string_for_pattern(pattern, value, lo, hi)
        return value

    def text_for(self, key: str | None) -> str:
        k = (key or "").lower()
        if k in ("sentiment", "label", "tone", "polarity"):
            return self.mood
        if any(t in k for t in _TEXTUAL_KEYS):
            n = 6 if "title" in k or "headline" in k or "topic" in k or "subject" in k else 12
            picked = self.keywords[:n]
            sentence = " ".join(picked)
            return sentence[:1].upper() + sentence[1:] + ("" if n == 6 else ".")
        if k in ("language", "lang"):
            return "en"
        if "name" in k:
            return " ".join(w.capitalize() for w in self.keywords[:2])
        if "id" == k or k.endswith("_id"):
            return f"{k or 'id'}-{self.rng.randrange(10_000):04d}"
        return self.keywords[self.rng.randrange(len(self.keywords))]

    def number(self, schema: dict, key: str | None, integer: bool) -> Any:
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        xlo = schema.get("exclusiveMinimum")
        xhi = schema.get("exclusiveMaximum")
        # Draft 4 style booleans next to minimum/maximum.
        if xlo is True:
            xlo, lo = lo, None
        if xhi is True:
            xhi, hi = hi, None
        if xlo is False:
            xlo = None
        if xhi is False:
            xhi = None
        step = 1 if integer else 0.01
        low = max([v for v in (lo, None if xlo is None else xlo + step) if v is not None], default=None)
        high = min([v for v in (hi, None if xhi is None else xhi - step) if v is not None], default=None)
        k = (key or "").lower()
        if low is None and high is None:
            if "score" in k or "confidence" in k or "probability" in k:
                low, high = (0, 1) if not integer else (0, 10)
            else:
                low, high = (0, 100)
        elif low is None:
            low = high - 100
        elif high is None:
            high = low + 100
        if "score" in k and not integer and low <= 0 and high >= 1:
            value: Any = {"positive": 0.9, "negative": 0.1, "neutral": 0.5}[self.mood]
        elif integer:
            value = (
                self.rng.randint(int(_ceil(low)), int(_floor(high))) if _ceil(low) <= _floor(high) else int(_ceil(low))
            )
        else:
            value = round(self.rng.uniform(low, high), 2)
            value = min(max(value, low), high)
        multiple = schema.get("multipleOf")
        if multiple:
            value = _ceil(low / multiple) * multiple if low is not None else 0
            if integer:
                value = int(value)
        return value


def _ceil(v: float) -> float:
    import math

    return math.ceil(v)


def _floor(v: float) -> float:
    import math

    return math.floor(v)


def _singular(key: str | None) -> str | None:
    if key and key.endswith("s") and len(key) > 3:
        return key[:-1]
    return key


def _string_for_pattern(pattern: str, current: str, lo: int, hi: int | None) -> str:
    """Tries a few shapes that common patterns accept; a general regex inverter is out of scope."""
    candidates = [
        current,
        current.lower(),
        current.upper(),
        re.sub(r"\W", "", current),
        "a",
        "A",
        "0",
        "abc",
        "ABC",
        "123",
        "a1",
        "2025-01-01",
        "x@example.com",
        "AB12",
        "+33123456789",
        "00000",
    ]
    for c in candidates:
        if re.search(pattern, c) and len(c) >= lo and (hi is None or len(c) <= hi):
            return c
    return current


def generate(schema: dict, text: str = "", seed: int = 0) -> Any:
    """A value that validates against `schema`, deterministic for (schema, text, seed)."""
    return _Generator(schema, text, random.Random(seed)).value(schema)


def generate_json_object(text: str, seed: int = 0) -> dict:
    """The answer for `json_object` mode: no schema, so a small object describing the prompt."""
    gen = _Generator({}, text, random.Random(seed))
    return {
        "answer": gen.text_for("answer"),
        "sentiment": gen.mood,
        "keywords": gen.keywords[:5],
        "confidence": round(0.55 + random.Random(seed).random() * 0.4, 2),
    }
