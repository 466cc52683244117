"""Stdout for the Airbyte protocol. Messages and log lines come from several threads (the
protocol loop, the pipeline's event loop); each line is written whole under one lock, so no two
messages can interleave on the wire.

Log lines are Airbyte LOG messages, formatted here rather than by the CDK's AirbyteLogFormatter so
that `write` runs without importing the CDK (see messages.py). Like the CDK's formatter, this one
masks every registered secret, whatever the message."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Iterable, Mapping

import orjson

from mistral_connection.redaction import secret_forms

_LOCK = threading.Lock()
_SECRETS: set[str] = set()
MASK = "****"
_LEVELS = {logging.CRITICAL: "FATAL", logging.ERROR: "ERROR", logging.WARNING: "WARN", logging.INFO: "INFO",
           logging.DEBUG: "DEBUG"}


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


def config_secrets(config: Mapping[str, Any]) -> list[str]:
    """The config's secret values: the fields spec.yaml marks `airbyte_secret`."""
    key = config.get("api_key") if isinstance(config, Mapping) else None
    # Every form the key can take on the wire: URL-encoded when it travels as a query parameter.
    return secret_forms(key) if isinstance(key, str) and key.strip() else []


def mask(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):  # a longer form first, not half masked by a shorter
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class LockedStdout:
    def write(self, text: str) -> int:
        with _LOCK:
            written = sys.stdout.write(text)
            sys.stdout.flush()
            return written

    def flush(self) -> None:
        with _LOCK:
            sys.stdout.flush()


def write_line(line: str) -> None:
    LockedStdout().write(line + "\n")


def write_message(message: Mapping[str, Any]) -> None:
    write_line(orjson.dumps(message).decode())


class LogMessageFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = _LEVELS.get(record.levelno, "INFO")
        return orjson.dumps({"type": "LOG", "log": {"level": level, "message": mask(super().format(record))}}).decode()


def configure_logging() -> None:
    logger = logging.getLogger("airbyte")
    if any(getattr(h, "_destination_mistral", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(LockedStdout())
    handler.setFormatter(LogMessageFormatter())
    handler._destination_mistral = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
