"""The secrets no line on stdout may show: every registered one is masked, whatever the message."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

_SECRETS: set[str] = set()
MASK = "****"


def register_secrets(values: Iterable[Any]) -> None:
    """Values never to print (the API key). Also handed to the CDK's filter when the CDK is loaded,
    so a trace it formats is masked too."""
    fresh = [v for v in values if isinstance(v, str) and v]
    _SECRETS.update(fresh)
    cdk = sys.modules.get("airbyte_cdk.utils.airbyte_secrets_utils")
    if cdk is not None and fresh:
        cdk.update_secrets(fresh)


def registered_secrets() -> list[str]:
    return list(_SECRETS)


def mask(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):  # a longer form first, not half masked by a shorter
        if secret in text:
            text = text.replace(secret, MASK)
    return text
