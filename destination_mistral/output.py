"""Stdout for the Airbyte protocol. Messages and log lines come from several threads (the
protocol loop, the pipeline's event loop); each line is written whole under one lock, so no two
messages can interleave on the wire."""

from __future__ import annotations

import logging
import sys
import threading

from airbyte_cdk.logger import AirbyteLogFormatter

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


def configure_logging() -> None:
    logger = logging.getLogger("airbyte")
    if any(getattr(h, "_destination_mistral", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(LockedStdout())
    handler.setFormatter(AirbyteLogFormatter())
    handler._destination_mistral = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
