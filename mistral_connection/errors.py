"""How failures reach the user: one sentence, the field to fix, and the right failure type."""

from __future__ import annotations

import difflib
from typing import Iterable

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

INVALID_KEY_MESSAGE = (
    "The Mistral API rejected the API key (HTTP {status}): check `api_key` "
    "(and `key_placement` if you use a proxy)."
)


def config_error(message: str) -> AirbyteTracedException:
    """A user mistake: the platform shows `message` and does not retry."""
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)


def transient_error(message: str) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)


def nearest_model_names(wanted: str, available: Iterable[str], limit: int = 3) -> list[str]:
    names = sorted(set(available))
    close = difflib.get_close_matches(wanted, names, n=limit, cutoff=0.4)
    if close:
        return close
    # A prefix match catches "mistral-large" for "mistral-large-latest" when difflib's ratio is low.
    stem = wanted.split("-")[0]
    return [n for n in names if n.startswith(stem)][:limit]


def unknown_model_message(wanted: str, available: Iterable[str]) -> str:
    suggestions = nearest_model_names(wanted, available)
    hint = f" Did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
    return f"Model {wanted!r} is not offered by this account: set `model` to one listed by GET /v1/models.{hint}"
