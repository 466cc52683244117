"""How failures reach the user: one sentence, the field to fix, and the right failure type.

The Airbyte CDK is imported only when an error is actually made: importing it costs about a second
(its package builds every protocol serializer), which `destination-mistral write` would otherwise pay
on every run before reading its first record."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

INVALID_KEY_MESSAGE = (
    "The Mistral API rejected the API key (HTTP {status}): check `api_key` (and `key_placement` if you use a proxy)."
)


def _traced(message: str, failure_type: str, internal_message: str | None = None) -> AirbyteTracedException:
    from airbyte_cdk.models import FailureType
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    return AirbyteTracedException(
        message=message, internal_message=internal_message or message, failure_type=FailureType(failure_type)
    )


def config_error(message: str) -> AirbyteTracedException:
    """A user mistake: the platform shows `message` and does not retry."""
    return _traced(message, "config_error")


def transient_error(message: str) -> AirbyteTracedException:
    return _traced(message, "transient_error")


def system_error(message: str, internal_message: str | None = None) -> AirbyteTracedException:
    """A bug of ours: the platform retries it and shows `message`."""
    return _traced(message, "system_error", internal_message)


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
