"""Fill-in-the-middle completions (/v1/fim/completions) as a pure function of the request body. The
answer is code-shaped and deterministic: identifiers from the prompt, indented under the prompt's last
line, in Python or brace style after it. The response is a chat.completion, as the spec's
FIMCompletionResponse is a ChatCompletionResponse, so streaming reuses chat's events."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from . import validation
from .errors import invalid_model
from .inference import Admit, ChatResult, ModelLookup, check_context, completion_result, cut_answer, seed_of, stop_list
from .tokens import count_tokens

# The prefix, suffix and middle markers of the FIM template.
FIM_CONTROL_TOKENS = 3
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset(
    "def return if else elif for while in is not and or class import from as with try except finally pass "
    "none true false function const let var async await new this self".split()
)
_STATEMENTS = (
    "{a} = {b}({c})",
    "{a} = {b} + {c}",
    "if {a} is None:\n{deeper}{a} = {b}",
    "for item in {a}:\n{deeper}{b}(item)",
    "{a}.append({b})",
)
_BRACE_STATEMENTS = (
    "const {a} = {b}({c});",
    "let {a} = {b} + {c};",
    "if ({a} == null) {{\n{deeper}{a} = {b};\n{indent}}}",
    "{a}.push({b});",
)


def _identifiers(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for name in _IDENT_RE.findall(text):
        if name.lower() not in _KEYWORDS:
            seen.setdefault(name, None)
    return list(seen) or ["value", "result", "data"]


def _indent_after(prompt: str) -> tuple[str, bool]:
    """The indentation of the next line and whether the code uses braces."""
    last = prompt.rstrip("\n").split("\n")[-1]
    lead = last[: len(last) - len(last.lstrip())]
    stripped = last.rstrip()
    if stripped.endswith("{"):
        return lead + "    ", True
    if stripped.endswith(":"):
        return lead + "    ", False
    return lead, "{" in prompt or ";" in prompt


def _draft(prompt: str, suffix: str, seed: int, min_tokens: int | None) -> str:
    names = _identifiers(prompt + "\n" + suffix)
    indent, braces = _indent_after(prompt)
    rng = np.random.default_rng(seed)
    templates = _BRACE_STATEMENTS if braces else _STATEMENTS

    def statement(pool: tuple[str, ...]) -> str:
        a, b, c = (names[int(rng.integers(0, len(names)))] for _ in range(3))
        return indent + pool[int(rng.integers(0, len(pool)))].format(
            a=a, b=b, c=c, indent=indent, deeper=indent + "    "
        )

    lines = [statement(templates) for _ in range(int(rng.integers(1, 4)))]
    if "return" not in suffix:
        lines.append(f"{indent}return {names[int(rng.integers(0, len(names)))]}{';' if braces else ''}")
    # The middle starts on a new line unless the prompt stops mid-line (e.g. "def add").
    lead = "" if prompt.endswith("\n") or not prompt.rstrip().endswith((":", "{")) else "\n"
    text = lead + "\n".join(lines) + "\n"
    comment = "//" if braces else "#"
    while min_tokens and count_tokens(text) < min_tokens:
        text += f"{indent}{comment} {names[int(rng.integers(0, len(names)))]}\n"
    return text


def fim_completion(body: Any, lookup: ModelLookup, admit: Admit = None) -> ChatResult:
    body = validation.require_object(body)
    validation.check_fim(body)
    model_id = body["model"]
    model = lookup(model_id) if isinstance(model_id, str) else None
    if model is None or not model.can("completion_fim"):
        raise invalid_model(400, model_id)
    prompt = body["prompt"]
    suffix = body.get("suffix") or ""
    prompt_tokens = count_tokens(prompt) + count_tokens(suffix) + FIM_CONTROL_TOKENS
    max_tokens = body.get("max_tokens")
    check_context(model, prompt_tokens, max_tokens)
    if admit is not None:
        admit(prompt_tokens)
    seed = seed_of("fim", model.id, prompt, suffix, body.get("random_seed"))
    draft = _draft(prompt, suffix, seed, body.get("min_tokens"))
    content, pieces, finish = cut_answer(draft, stop_list(body), max_tokens)
    message = {"role": "assistant", "content": content, "tool_calls": None, "prefix": False}
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return completion_result(model_id, [choice], [pieces], prompt_tokens, len(pieces))
