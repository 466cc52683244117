"""The answers that stop the sync rather than one record: failures every following request would hit
too (the key, a redirect, an unknown model or route), the monthly quota, and refusals that name
neither the input nor a parameter, in a row. One clear error beats a million identical error rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from destination_mistral.http.errors import ApiError, api_message, classify_refusal
from mistral_connection.errors import INVALID_KEY_MESSAGE, config_error, transient_error

# Refusals (400/422) that name neither the input nor a parameter, in a row with nothing accepted in
# between: the request itself is wrong for this API.
MAX_UNEXPLAINED_REFUSALS_IN_A_ROW = 50


# The capability GET /v1/models lists for a model a route takes, by the route's end.
_CAPABILITIES = (
    ("embeddings", "embeddings"),
    ("moderations", "moderation"),
    ("classifications", "classification"),
    ("/ocr", "ocr"),
)


def raise_if_fatal(status: int, body: Any, raw: bytes, route: str) -> None:
    """Raises the config_error for a failure that every following request would hit too."""
    if status in (401, 403):
        raise config_error(INVALID_KEY_MESSAGE.format(status=status))
    if 300 <= status < 400:
        raise config_error(
            f"The API answered {route} with a redirect (HTTP {status}), which destination-mistral does not follow so "
            "that the key only goes to the configured host: set `base_url` to the address the API is served from."
        )
    text = api_message(body, raw)
    if status in (400, 404) and (
        "invalid model" in text.lower() or (isinstance(body, Mapping) and body.get("type") == "invalid_model")
    ):
        # The API words an unknown model and a model without this route's capability alike; the
        # model may come from `model`, `enrichment.model` or a stream override: the message names all.
        need = next((cap for end, cap in _CAPABILITIES if route.endswith(end)), "completion_chat")
        raise config_error(
            f"The Mistral API refused the model for {route} ({text}): the model a stream's enrichment uses "
            "(`enrichment.model` or a `stream_overrides` entry's, else the top-level `model`) must be one "
            f"GET /v1/models lists with the {need} capability."
        )
    if status == 404 and ("not found" in text.lower() or not text):
        raise config_error(
            f"The API answered 404 for {route}: check `base_url` (it should be the API root, e.g. "
            "https://api.mistral.ai)."
        )


def month_error(route: str, why: str) -> Exception:
    return transient_error(
        f"The Mistral account's monthly token quota is spent ({why}); {route} is refused until it resets. "
        "The sync stops; the records before this one are committed. Raise the workspace's monthly limit or run "
        "again after the reset."
    )


class UnexplainedRefusals:
    """The refusals in a row that named neither the input nor a parameter."""

    def __init__(self) -> None:
        self.in_a_row = 0

    def reset(self) -> None:
        self.in_a_row = 0

    def error_for(self, status: int, body: Any, text: str, route: str) -> ApiError:
        """The ApiError for a 400/422 (or another 4xx): the request was understood and refused.
        Raises a config_error instead when a parameter is at fault, or when too many refusals in a
        row named nothing."""
        message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        kind, field = classify_refusal(status, body, text) if status in (400, 413, 422) else ("unknown", None)
        error = ApiError(message, status, body, kind=kind, field=field)
        if kind == "config" and field not in ("encoding_format",):
            raise error.as_config_error(route)
        if kind != "unknown":
            self.in_a_row = 0
            return error
        self.in_a_row += 1
        if self.in_a_row >= MAX_UNEXPLAINED_REFUSALS_IN_A_ROW:
            raise config_error(
                f"The Mistral API refused {self.in_a_row} requests in a row to {route} (last: {message}): "
                "check the enrichment's settings and `base_url`."
            )
        return error
