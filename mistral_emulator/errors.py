"""Error bodies in the shapes real Mistral responses have (see NOTES §1): the gateway's 401, FastAPI's
404/422, and the `{"object":"error",...}` body of the inference service."""

from __future__ import annotations

import secrets
from typing import Any


class ApiError(Exception):
    """Raised by request handling and turned into a JSON response by the app's error middleware."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}
        # For a 429 of the account limits: which one refused ("rps", "tokens_minute", "tokens_month").
        self.cause: str | None = None


def mistral_error(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"object": "error", "message": message, "type": type_, "param": param, "code": code}


def invalid_model(status: int, model: Any) -> ApiError:
    return ApiError(status, mistral_error(f"Invalid model: {model}", "invalid_model", "1500"))


def bad_request(message: str, type_: str = "invalid_request_error", code: str | None = None) -> ApiError:
    return ApiError(400, mistral_error(message, type_, code))


def not_found(detail: str = "Not Found") -> ApiError:
    return ApiError(404, {"detail": detail})


def unauthorized(no_key: bool) -> ApiError:
    # The gateway answers before the application: its body carries a request id, not the error envelope.
    message = "No API key found in request" if no_key else "Unauthorized"
    return ApiError(401, {"message": message, "request_id": secrets.token_hex(16)})


def server_error(status: int) -> dict:
    messages = {500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable"}
    return mistral_error(messages.get(status, "Internal server error"), "server_error", None)


def validation_error(items: list[dict]) -> ApiError:
    return ApiError(422, {"detail": items})


def detail_item(type_: str, loc: list, msg: str, input_: Any = None, ctx: dict | None = None) -> dict:
    item = {"type": type_, "loc": loc, "msg": msg, "input": input_}
    if ctx is not None:
        item["ctx"] = ctx
    return item
