"""The inference routes by path, for the batch runner: one request of a job answers exactly what the
synchronous route answers (same checks, same errors, same body), without spending the account limits."""

from __future__ import annotations

from typing import Any

from .classifiers import classification, moderation
from .errors import bad_request
from .fim import fim_completion
from .inference import chat_completion, embeddings
from .ocr import ocr


def _no_stream(body: Any) -> Any:
    # A batch line is answered as one JSON body, never as a stream.
    return {**body, "stream": False} if isinstance(body, dict) and body.get("stream") else body


def run_endpoint(endpoint: str, body: Any, account: Any) -> dict:
    """One request of a batch job; raises ApiError exactly like the HTTP route would."""
    lookup = account.model
    if endpoint == "/v1/chat/completions":
        return chat_completion(_no_stream(body), lookup).response
    if endpoint == "/v1/fim/completions":
        return fim_completion(_no_stream(body), lookup).response
    if endpoint == "/v1/embeddings":
        return embeddings(body, lookup).response
    if endpoint in ("/v1/moderations", "/v1/chat/moderations"):
        return moderation(body, lookup, chat=endpoint == "/v1/chat/moderations")[0]
    if endpoint in ("/v1/classifications", "/v1/chat/classifications"):
        return classification(body, lookup, chat=endpoint == "/v1/chat/classifications")[0]
    if endpoint == "/v1/ocr":
        return ocr(body, lookup, account)[0]
    raise bad_request(f"Endpoint {endpoint} is not supported by this emulator's batch runner.")
