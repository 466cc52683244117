"""Log lines as Airbyte LOG messages, formatted here rather than by the CDK's AirbyteLogFormatter so
that `write` runs without importing the CDK. Like the CDK's formatter, this one masks every
registered secret, whatever the message."""

from __future__ import annotations

import logging

from airbyte_protocol_dataclasses.models import AirbyteLogMessage, AirbyteMessage, Level, Type

from destination_mistral.protocol.masking import mask
from destination_mistral.protocol.stdout import LockedStdout, message_line
from destination_mistral.protocol.wire import as_wire

_LEVELS = {
    logging.CRITICAL: Level.FATAL,
    logging.ERROR: Level.ERROR,
    logging.WARNING: Level.WARN,
    logging.INFO: Level.INFO,
    logging.DEBUG: Level.DEBUG,
}


def log_message(level: Level, text: str) -> AirbyteMessage:
    return AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=level, message=mask(text)))


class LogMessageFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return message_line(as_wire(log_message(_LEVELS.get(record.levelno, Level.INFO), super().format(record))))


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
