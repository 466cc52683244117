"""Chat completions and embeddings as pure functions of the request body: validated, then answered
deterministically (classifiers.py, ocr.py and fim.py do the same for the other inference routes). The
HTTP layer and the batch runner both call these, so a batch output line is exactly what the synchronous
endpoint would have answered."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from . import validation
from .catalogue import Model
from .embeddings import embedding_fragments
from .errors import ApiError, bad_request, invalid_model, mistral_error
from .json_schema_answers import generate, generate_json_object, sentiment
from .tokens import count_embedding_tokens, count_prompt_tokens, count_tokens, split_tokens, words

MAX_EMBEDDING_INPUTS = 512
MAX_EMBEDDING_TOKENS_TOTAL = 16_384
MAX_EMBEDDING_TOKENS_PER_INPUT = 8_192
# Chat templates add a few control tokens around each message.
TOKENS_PER_MESSAGE = 3

ModelLookup = Callable[[str], Model | None]
# Called with a validated request's prompt tokens before any answer is made; raises ApiError to refuse
# it (the account's token limits). The batch runner passes none: batch jobs do not spend the rate limit.
Admit = Callable[[int], None] | None


def seed_of(*parts: Any) -> int:
    digest = hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(c.get("text", "") for c in content if isinstance(c, dict) and isinstance(c.get("text"), str))
    return str(content)


@dataclass
class ChatResult:
    """A finished completion plus what the latency model and stats need."""

    response: dict
    prompt_tokens: int
    completion_tokens: int
    # Text pieces for streaming, one per token, per choice.
    pieces: list[list[str]]


def resolve_model(lookup: ModelLookup, model_id: Any, status: int = 400) -> Model:
    model = lookup(model_id) if isinstance(model_id, str) else None
    if model is None:
        raise invalid_model(status, model_id)
    return model


_PHRASES = (
    "Here is a short answer about {a}.",
    "In brief, {a} and {b} are the key points.",
    "The request concerns {a}; the main consideration is {b}.",
    "Based on the information given, {a} matters most.",
    "A practical next step is to look at {b} and then {c}.",
    "Overall, {a} relates closely to {c}.",
    "This summary keeps {b} in focus.",
    "To conclude, {c} is worth a closer look.",
)


_STOPWORDS = frozenset(
    "this that these those with from have what which when where there their about would could should into "
    "your yours them they then than been were will just only also very more most some such each other".split()
)


def _text_answer(prompt: str, seed: int) -> str:
    keys = [w for w in words(prompt) if len(w) > 3 and w not in _STOPWORDS] or ["the", "question", "topic"]
    rng = np.random.default_rng(seed)
    n_sentences = int(rng.integers(2, 6))
    out = []
    for _ in range(n_sentences):
        phrase = _PHRASES[int(rng.integers(0, len(_PHRASES)))]
        a, b, c = (keys[int(rng.integers(0, len(keys)))] for _ in range(3))
        out.append(phrase.format(a=a, b=b, c=c))
    mood = sentiment(prompt)
    if mood != "neutral":
        out.append(f"The tone of the message is {mood}.")
    return " ".join(out)


def _tool_call(body: dict, prompt: str, seed: int) -> dict | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    messages = body.get("messages") or []
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool" and choice == "auto":
        return None
    chosen = None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        chosen = next((t for t in tools if t["function"].get("name") == name), None)
    elif choice in ("any", "required"):
        chosen = tools[seed % len(tools)]
    else:
        prompt_words = set(words(prompt))
        for t in tools:
            fn = t["function"]
            name_words = set(words(str(fn.get("name", "")).replace("_", " ")))
            if name_words & prompt_words:
                chosen = t
                break
    if chosen is None:
        return None
    fn = chosen["function"]
    args = generate(fn.get("parameters") or {"type": "object"}, prompt, seed)
    return {
        "id": f"{seed % 10**9:09d}"[:9],
        "type": "function",
        "function": {"name": fn.get("name"), "arguments": orjson.dumps(args).decode()},
        "index": 0,
    }


def chat_completion(body: Any, lookup: ModelLookup, admit: Admit = None) -> ChatResult:
    body = validation.require_object(body)
    validation.check_chat(body)
    model = resolve_model(lookup, body["model"])
    if not model.can("completion_chat"):
        raise invalid_model(400, body["model"])
    messages = body["messages"]
    if not messages:
        raise bad_request("Messages list must not be empty", "invalid_request_message_order", "3230")
    texts = [message_text(m.get("content")) for m in messages]
    prompt = "\n".join(texts)
    prompt_tokens = sum(map(count_prompt_tokens, texts)) + TOKENS_PER_MESSAGE * len(messages)
    max_tokens = body.get("max_tokens")
    check_context(model, prompt_tokens, max_tokens)
    rf = body.get("response_format") or {}
    mode = rf.get("type", "text")
    if mode == "json_schema" and not isinstance(rf.get("json_schema"), dict):
        raise bad_request("response_format.json_schema is required when type is json_schema", code="3001")
    if admit is not None:
        admit(prompt_tokens)
    last_user = next((texts[i] for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), prompt)
    base_seed = seed_of(
        model.id,
        [(m.get("role"), t) for m, t in zip(messages, texts, strict=False)],
        body.get("random_seed"),
        rf,
        body.get("tools"),
    )
    prefix = ""
    if messages[-1].get("role") == "assistant" and messages[-1].get("prefix"):
        prefix = texts[-1]
    stops = stop_list(body)
    n = body.get("n") or 1
    choices, all_pieces, completion_tokens = [], [], 0
    for index in range(n):
        seed = base_seed + index
        tool_call = _tool_call(body, last_user, seed) if mode == "text" else None
        if tool_call is not None:
            content, finish = "", "tool_calls"
            pieces: list[str] = []
            completion_tokens += count_tokens(tool_call["function"]["arguments"]) + 4
        else:
            if mode == "json_schema":
                content = orjson.dumps(generate(rf["json_schema"]["schema"], last_user, seed)).decode()
            elif mode == "json_object":
                content = orjson.dumps(generate_json_object(last_user, seed)).decode()
            else:
                content = _text_answer(last_user, seed)
            content = prefix + content if prefix and not content.startswith(prefix) else content
            content, pieces, finish = cut_answer(content, stops, max_tokens)
            completion_tokens += len(pieces)
        message = {
            "role": "assistant",
            "content": content,
            "tool_calls": [tool_call] if tool_call else None,
            "prefix": False,
        }
        choices.append({"index": index, "message": message, "finish_reason": finish})
        all_pieces.append(pieces)
    return completion_result(body["model"], choices, all_pieces, prompt_tokens, completion_tokens)


def check_context(model: Model, prompt_tokens: int, max_tokens: int | None) -> None:
    limit = model.family.max_context_length
    if prompt_tokens + (max_tokens or 0) > limit:
        raise ApiError(
            400,
            mistral_error(
                f"Prompt contains {prompt_tokens} tokens and {max_tokens or 0} draft tokens, too large for model "
                f"with {limit} maximum context length",
                "invalid_request_prompt",
                "3051",
            ),
        )


def stop_list(body: dict) -> list[str]:
    stops = body.get("stop")
    return [stops] if isinstance(stops, str) else list(stops or [])


def cut_answer(content: str, stops: list[str], max_tokens: int | None) -> tuple[str, list[str], str]:
    """Applies `stop` then `max_tokens` to a drafted answer: (content, its token pieces, finish_reason)."""
    finish = "stop"
    for stop in stops:
        if stop and stop in content:
            content = content[: content.index(stop)]
    pieces = split_tokens(content)
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces = pieces[:max_tokens]
        content = "".join(pieces)
        finish = "length"
    return content, pieces, finish


def completion_result(
    model_id: str, choices: list[dict], pieces: list[list[str]], prompt_tokens: int, completion_tokens: int
) -> ChatResult:
    """The chat.completion envelope, shared by chat and FIM completions (FIMCompletionResponse is a
    ChatCompletionResponse)."""
    response = {
        "id": uuid.uuid4().hex,
        "object": "chat.completion",
        "model": model_id,
        "created": int(time.time()),
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "choices": choices,
    }
    return ChatResult(response, prompt_tokens, completion_tokens, pieces)


def stream_chunks(result: ChatResult, per_chunk: int = 4) -> list[tuple[dict, int]]:
    """The SSE events for a finished completion, each with the number of tokens it carries (for the
    latency model). The first delta carries the role, the last one the finish reason and the usage."""
    r = result.response
    base = {"id": r["id"], "object": "chat.completion.chunk", "created": r["created"], "model": r["model"]}
    events: list[tuple[dict, int]] = []
    for choice, pieces in zip(r["choices"], result.pieces, strict=False):
        index = choice["index"]
        events.append(
            (
                {
                    **base,
                    "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                },
                0,
            )
        )
        tool_calls = choice["message"]["tool_calls"]
        if tool_calls:
            events.append(
                ({**base, "choices": [{"index": index, "delta": {"tool_calls": tool_calls}, "finish_reason": None}]}, 0)
            )
        for start in range(0, len(pieces), per_chunk):
            group = pieces[start : start + per_chunk]
            events.append(
                (
                    {
                        **base,
                        "choices": [{"index": index, "delta": {"content": "".join(group)}, "finish_reason": None}],
                    },
                    len(group),
                )
            )
        # The finish reason rides on an empty delta, after the content.
        events.append(
            (
                {
                    **base,
                    "choices": [{"index": index, "delta": {"content": ""}, "finish_reason": choice["finish_reason"]}],
                },
                0,
            )
        )
    last, tokens = events[-1]
    events[-1] = ({**last, "usage": r["usage"]}, tokens)
    return events


@dataclass
class EmbeddingResult:
    response: dict
    tokens: int
    inputs: int


def embeddings(body: Any, lookup: ModelLookup, admit: Admit = None) -> EmbeddingResult:
    body = validation.require_object(body)
    validation.check_embeddings(body)
    model = resolve_model(lookup, body["model"])
    if not model.is_embedding:
        raise invalid_model(400, body["model"])
    raw = body["input"]
    texts = [raw] if isinstance(raw, str) else raw
    if not texts:
        raise bad_request("Input list must not be empty.", "invalid_request_prompt", "3210")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise bad_request("Too many inputs in request, split into more batches.", "invalid_request_prompt", "3210")
    counts = []
    for i, text in enumerate(texts):
        if not text:  # only an empty string (NOTES.md): whitespace is text, of one token or more
            raise bad_request(f"Input at index {i} is empty.", "invalid_request_prompt", "3210")
        n = count_embedding_tokens(model.id, text)
        if n > MAX_EMBEDDING_TOKENS_PER_INPUT:
            raise bad_request(
                f"Input at index {i} contains {n} tokens, more than the maximum of "
                f"{MAX_EMBEDDING_TOKENS_PER_INPUT} tokens per input.",
                "invalid_request_prompt",
                "3210",
            )
        counts.append(n)
    total = sum(counts)
    if total > MAX_EMBEDDING_TOKENS_TOTAL:
        raise bad_request("Too many tokens overall, split into more batches.", "invalid_request_prompt", "3210")
    family = model.family
    dim = body.get("output_dimension")
    if dim is None:
        dim = family.embedding_dimension
    elif dim != family.embedding_dimension and family.max_embedding_dimension == family.embedding_dimension:
        raise bad_request(
            f"Model {body['model']} does not support output_dimension={dim}; its dimension is "
            f"{family.embedding_dimension}.",
            "invalid_request_error",
            "3000",
        )
    elif dim > family.max_embedding_dimension:
        raise bad_request(
            f"output_dimension must be at most {family.max_embedding_dimension} for model {body['model']}.",
            "invalid_request_error",
            "3000",
        )
    dtype = body.get("output_dtype", "float")
    if dtype in ("binary", "ubinary") and dim % 8:
        raise bad_request("output_dimension must be a multiple of 8 for binary output types.")
    if admit is not None:
        admit(total)
    vectors = embedding_fragments(texts, dim, dtype, body.get("encoding_format", "float"))
    data = [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)]
    response = {
        "id": uuid.uuid4().hex,
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": total, "completion_tokens": 0, "total_tokens": total},
    }
    return EmbeddingResult(response, total, len(texts))
