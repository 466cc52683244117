"""Stdout for the Airbyte protocol. Messages and log lines come from several threads (the
protocol loop, the pipeline's event loop); each line is written whole under one lock, so no two
messages can interleave on the wire."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

import orjson

_LOCK = threading.Lock()


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


def message_line(message: Mapping[str, Any]) -> str:
    """One message as the line that carries it."""
    return orjson.dumps(message).decode()


def write_message(message: Mapping[str, Any]) -> None:
    write_line(message_line(message))
