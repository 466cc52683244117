"""Chat completions: the request built from a record, and the answer read back from the response."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import orjson

from destination_mistral.client import ApiError, MistralClient
from destination_mistral.config import ChatSettings
from destination_mistral.results import Result, cache_key, failed
from destination_mistral.templates import RecordError, compile_template, render

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


@dataclass
class ChatInput:
    key: str
    messages: list[dict[str, str]]


class ChatEnricher:
    kind = "chat"

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

    @cached_property
    def _tokenizer(self):
        from destination_mistral.tokens import tokenizer_for

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
        limit = self.settings.max_input_tokens
        if limit:
            system_tokens = self._tokenizer.count(system) if system else 0
            user_tokens = self._tokenizer.count(user)
            if system_tokens + user_tokens > limit:
                if self.settings.input_too_long == "error" or system_tokens >= limit:
                    raise RecordError(f"prompt has {system_tokens + user_tokens} tokens, over max_input_tokens {limit}")
                user = self._tokenizer.truncate(user, limit - system_tokens)
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]
        return ChatInput(key=cache_key("chat/completions", self.model, self._params, messages), messages=messages)

    def request_body(self, item: ChatInput) -> dict[str, Any]:
        return {"model": self.model, "messages": item.messages, **self._params}

    async def run(self, item: ChatInput) -> Result:
        try:
            response = await self.client.post("chat/completions", self.request_body(item))
        except ApiError as error:
            return failed(error.message)
        return self.parse(response)

    def parse(self, response: Any) -> Result:
        if not isinstance(response, Mapping):
            return failed("the chat response is not a JSON object")
        usage = response.get("usage") or {}
        model = response.get("model") or self.model
        meta = dict(model=model, prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))
        choices = response.get("choices") or []
        if not choices:
            return Result(error="the chat response has no choices", **meta)
        message = choices[0].get("message") or {}
        content = message.get("content")
        if isinstance(content, list):  # content chunks: keep the text ones
            content = "".join(c.get("text", "") for c in content if isinstance(c, Mapping) and c.get("type", "text") == "text")
        if content is None:
            return Result(error=f"the answer is empty (finish_reason {choices[0].get('finish_reason')})", **meta)
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
            return Result(error=f"the answer is not valid JSON{hint}", **meta)
        if self._validator is not None:
            error = next(iter(self._validator.iter_errors(value)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                return Result(error=f"the answer does not match the schema at {where}: {error.validator} constraint", **meta)
        return Result(value=value, **meta)
