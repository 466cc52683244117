"""A conversation a record holds (a list of `{role, content}` messages), read for the chat routes of
moderation and classification: each message checked and its content made text, so that a record
holding something else is that record's error, not a refusal of the batch it travels in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from destination_mistral.enrich.templates import RecordError, value_at

ROLES = ("system", "user", "assistant")


def conversation_at(record: Mapping[str, Any], path: tuple[str, ...]) -> list[dict[str, str]]:
    """The messages at `path`, each as `{"role", "content"}` with text content. Raises RecordError
    naming the field (never its content)."""
    where = ".".join(path)
    value = value_at(record, path)
    if value is None:
        raise RecordError(f"the conversation field `{where}` is missing or null")
    if not isinstance(value, list) or not value:
        raise RecordError(f"the conversation field `{where}` is not a non-empty list of messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise RecordError(f"message {index} of `{where}` is not an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise RecordError(f"message {index} of `{where}` has a role other than {', '.join(ROLES)}")
        content = _text(message.get("content"))
        if content is None:
            raise RecordError(f"message {index} of `{where}` has no text content")
        messages.append({"role": role, "content": content})
    if not any(m["content"].strip() for m in messages):
        raise RecordError(f"every message of `{where}` is empty")
    return messages


def conversation_text(messages: list[dict[str, str]]) -> str:
    """The conversation's text, as its tokens are counted."""
    return "\n".join(message["content"] for message in messages)


def _text(content: Any) -> str | None:
    """A message's content as text: a string, or the text of its text chunks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [c.get("text") for c in content if isinstance(c, Mapping) and c.get("type", "text") == "text"]
        if parts and all(isinstance(part, str) for part in parts):
            return "".join(parts)
    return None
