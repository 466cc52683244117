"""Chat completions: the request built from a record, and the answer read back from the response."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from destination_mistral.enrich.results import Result, cache_key, failed
from destination_mistral.enrich.templates import RecordError, compile_template, render
from destination_mistral.enrich.tokens import upper_bound_for
from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import ApiError, InvalidAnswer
from destination_mistral.settings import ChatSettings

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
# No token of Mistral's tokenizers spans more characters than this; a prompt longer than the token
# limit times this is over the limit without being tokenized (tokenizing 100 MB would take minutes).
MAX_CHARS_PER_TOKEN = 32


@dataclass
class ChatInput:
    key: str
    messages: list[dict[str, str]]
    tokens: int | None = None  # the prompt's token count, taken when first needed (pacing its cost)
    cut: bool = False  # the user message was cut to the limit (`input_too_long: truncate`)

    def __repr__(self) -> str:  # never the prompt: it is record content
        return f"ChatInput(key={self.key!r}, tokens={self.tokens!r})"


class ChatEnricher:
    kind = "chat"
    endpoint = "chat/completions"
    dimension: int | None = None  # answers are text or JSON: no vector column to size

    def __init__(self, settings: ChatSettings, client: MistralClient | None) -> None:
        self.settings = settings
        self.client = client
        self.model = settings.model
        self._user = compile_template(settings.prompt_template, "prompt_template")
        self._system = compile_template(settings.system_prompt, "system_prompt") if settings.system_prompt else None
        self._params = {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
            "random_seed": settings.random_seed,
            "safe_prompt": settings.safe_prompt or None,
            "response_format": settings.response_format.request_body(),
        }
        self._params = {k: v for k, v in self._params.items() if v is not None}
        # The cache key is made of what the user set: the default cap on the answer (sent with every
        # request) only cuts answers that ran on, so answers cached before it still hold.
        self._key_params = dict(self._params)
        self._params["max_tokens"] = settings.effective_max_tokens

    @cached_property
    def _tokenizer(self):
        from destination_mistral.enrich.tokens import tokenizer_for

        return tokenizer_for(self.model)

    @cached_property
    def _validator(self):
        schema = self.settings.response_format.schema
        if not schema:
            return None
        import jsonschema

        return jsonschema.validators.validator_for(schema)(schema)

    def prepare(self, record: Mapping[str, Any]) -> ChatInput:
        user = render(self._user, record)
        if not user.strip():
            raise RecordError("the prompt is empty once the template is filled in (null, empty or blank fields)")
        system = render(self._system, record) if self._system is not None else None
        limit = self.settings.prompt_token_limit
        what = (
            "max_input_tokens"
            if self.settings.max_input_tokens and self.settings.max_input_tokens <= limit
            else f"what the model's context leaves besides max_tokens {self.settings.effective_max_tokens}"
        )
        chars = len(user) + (len(system) if system else 0)
        truncate = self.settings.input_too_long == "truncate"
        if chars > limit * MAX_CHARS_PER_TOKEN and not truncate:
            raise RecordError(f"prompt has {chars} characters, more than {limit} tokens can hold ({what})")
        tokens = None
        cut = False
        bound = (upper_bound_for(self.model, user) or chars * 4) + (
            upper_bound_for(self.model, system) or 0 if system else 0
        )
        if bound > limit:
            if chars > limit * MAX_CHARS_PER_TOKEN:  # truncate: first cut by characters, cheaply
                user = user[: max(0, limit * MAX_CHARS_PER_TOKEN - (len(system) if system else 0))]
                cut = True
            system_tokens = self._tokenizer.count(system) if system else 0
            user_tokens = self._tokenizer.count(user)
            tokens = system_tokens + user_tokens
            if tokens > limit:
                if not truncate or system_tokens >= limit:
                    raise RecordError(f"prompt has {tokens} tokens, over {what} ({limit})")
                user = self._tokenizer.truncate(user, limit - system_tokens)
                tokens = system_tokens + self._tokenizer.count(user)
                cut = True
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": "user", "content": user}
        ]
        return ChatInput(
            key=cache_key("chat/completions", self.model, self._key_params, messages),
            messages=messages,
            tokens=tokens,
            cut=cut,
        )

    def count_tokens(self, items: list[ChatInput]) -> None:
        """Prompt token counts of inputs about to be sent (their cost for the pacer), many at once
        off the event loop (the pipeline calls this on its lookup thread)."""
        todo = [item for item in items if item.tokens is None]
        if todo:
            counts = self._tokenizer.count_many(["\n".join(m["content"] for m in item.messages) for item in todo])
            for item, count in zip(todo, counts, strict=False):
                item.tokens = count

    def _tokens_of(self, item: ChatInput) -> int:
        if item.tokens is None:
            self.count_tokens([item])
        return item.tokens

    def request_body(self, item: ChatInput) -> dict[str, Any]:
        return {"model": self.model, "messages": item.messages, **self._params}

    def body_for(self, item: ChatInput) -> dict[str, Any]:
        return self.request_body(item)

    def submit(self, item: ChatInput) -> asyncio.Task[Result]:
        """A task per input: each chat request carries one."""
        return asyncio.get_running_loop().create_task(self.run(item))

    def flush(self) -> None:
        """Nothing waits for a batch: every input is sent when it is submitted."""

    async def run(self, item: ChatInput) -> Result:
        try:
            # The answer is checked inside the client's retry loop: one of the wrong shape is sent again.
            return await self.client.post(
                "chat/completions", self.request_body(item), cost=self._tokens_of(item), validate=self.read_answer
            )
        except ApiError as error:
            if error.kind == "config":
                raise error.as_config_error("POST /v1/chat/completions") from None
            # A refusal that names the prompt (too long, invalid content), or one that names nothing:
            # this record's request, not the service.
            return failed(error.message, kind="input")

    def parse(self, response: Any, items: Sequence[ChatInput]) -> list[Result]:
        """The result of the one input a chat request carries."""
        return [self.read_answer(response)]

    def read_answer(self, response: Any) -> Result:
        """The record's result from a chat answer. An answer that cannot be a chat completion (not
        an object, no choices) raises InvalidAnswer: the service failed. One that is a completion but
        not what the user asked for (off the schema, cut by max_tokens) is the record's error."""
        if not isinstance(response, Mapping):
            raise InvalidAnswer("a chat answer that is not a JSON object")
        usage = response.get("usage") if isinstance(response.get("usage"), Mapping) else {}
        model = response.get("model") if isinstance(response.get("model"), str) else self.model
        meta = dict(
            model=model,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
        )
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise InvalidAnswer("a chat answer without choices")
        message = choices[0].get("message")
        if not isinstance(message, Mapping):
            raise InvalidAnswer("a chat answer whose choice has no message")
        content = message.get("content")
        if isinstance(content, list):  # content chunks: keep the text ones
            content = "".join(
                c.get("text", "") for c in content if isinstance(c, Mapping) and c.get("type", "text") == "text"
            )
        if content is not None and not isinstance(content, str):
            raise InvalidAnswer("a chat answer whose content is neither text nor chunks")
        if content is None:
            return Result(
                error=f"the answer is empty (finish_reason {choices[0].get('finish_reason')})",
                error_kind="answer",
                **meta,
            )
        if not self.settings.response_format.is_json:
            return Result(value=content, **meta)
        text = content
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            reason = choices[0].get("finish_reason")
            hint = " (cut off by max_tokens)" if reason in ("length", "model_length") else ""
            return Result(error=f"the answer is not valid JSON{hint}", error_kind="answer", **meta)
        if self._validator is not None:
            error = next(iter(self._validator.iter_errors(value)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                return Result(
                    error=f"the answer does not match the schema at {where}: {error.validator} constraint",
                    error_kind="answer",
                    **meta,
                )
        return Result(value=value, **meta)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
