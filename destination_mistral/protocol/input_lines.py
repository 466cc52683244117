"""What arrives on stdin, checked before it reaches the pipeline.

The platform normally sends well-formed Airbyte messages, but a sync also meets sources with bugs,
hand-made pipes and files edited by people. Whatever the line, the outcome is one of: the message
goes on; the record goes on with its broken characters replaced (and a warning that says so); or the
sync stops with a config error naming the line and the problem, after committing what came before.
Messages never quote record contents: they may be personal data."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
from airbyte_protocol_dataclasses.models import Change

from destination_mistral.protocol.describe import first_line, json_kind
from destination_mistral.protocol.messages import Record, State, StreamStatus
from destination_mistral.protocol.repair import MAX_DEPTH, scrub, too_deep, without_non_finite
from destination_mistral.protocol.state import StateProblem, state_message
from mistral_connection.errors import config_error

logger = logging.getLogger("airbyte")

# Message types the protocol defines that a destination may receive and has nothing to do with.
IGNORED_TYPES = frozenset({"LOG", "CONTROL", "SPEC", "CATALOG", "CONNECTION_STATUS", "DESTINATION_CATALOG"})
SECONDS_NOT_MILLISECONDS = 100_000_000_000  # 1973 in ms, 5138 in s
# The range of timestamps every output can hold (years 1 to 9999, in ms): an `emitted_at` outside
# it would fail the whole commit, so the record is stored with the time it arrived instead.
EMITTED_AT_RANGE = (-62_135_596_800_000, 253_402_300_799_000)
EXTRACTED_AT_REPLACED = {"field": "_airbyte_extracted_at", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
CHANGE_KINDS = frozenset(change.value for change in Change)


class InputParser:
    """Turns input lines (bytes or str) into Airbyte messages, numbering lines for error messages."""

    def __init__(self) -> None:
        self.line_number = 0
        self.repaired = 0
        self.line_repaired = False

    def parse(self, lines: Iterable[bytes | str]) -> Iterator[Record | State | StreamStatus]:
        for raw in lines:
            self.line_number += 1
            if not raw.strip():
                continue
            message = self._load(raw)
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "RECORD":
                yield self._record(message, raw)
            elif kind == "STATE":
                try:
                    parsed = state_message(message.get("state"))
                except StateProblem as problem:
                    raise config_error(
                        f"Input line {self.line_number} is a STATE message that is not valid ({problem})."
                    ) from None
                yield State(message, parsed)
            elif kind == "TRACE":
                status = self._stream_status(message)
                if status is not None:
                    yield status
            elif kind in IGNORED_TYPES:
                continue
            else:
                shown = repr(kind)[:40] if isinstance(kind, str) else "missing" if kind is None else json_kind(kind)
                raise config_error(
                    f"Input line {self.line_number} is not an Airbyte message (message type {shown}): "
                    "the input must be the output of a source's `read`, one JSON message per line."
                )
        if self.repaired:
            logger.warning(
                f"{self.repaired} input line(s) were not strict JSON (invalid UTF-8, lone surrogates, NaN or Infinity, "
                "integers past 64 bits): characters were replaced by U+FFFD, and numbers no output holds stored "
                "as NULL and named in _airbyte_meta."
            )

    def _load(self, raw: bytes | str) -> Any:
        self.line_repaired = False
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            reason = first_line(error)
        if "depth" in reason or "recursion" in reason.lower():
            raise config_error(f"Input line {self.line_number} is nested too deeply to be read ({reason}).")
        # orjson refuses invalid UTF-8 and lone surrogates; the standard parser reads them once
        # the bytes are decoded with replacement, and what it returns is scrubbed.
        try:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            value = scrub(json.loads(text))
        except (ValueError, RecursionError):
            raise config_error(
                f"Input line {self.line_number} is not valid JSON ({reason}): "
                "the input must be one Airbyte message per line."
            ) from None
        self.repaired += 1
        self.line_repaired = True
        return value

    def _stream_status(self, message: dict) -> StreamStatus | None:
        """A STREAM_STATUS trace, or None for the other traces (errors, estimates, analytics)."""
        trace = message.get("trace")
        if not isinstance(trace, dict) or trace.get("type") != "STREAM_STATUS":
            return None
        body = trace.get("stream_status")
        descriptor = body.get("stream_descriptor") if isinstance(body, dict) else None
        name = descriptor.get("name") if isinstance(descriptor, dict) else None
        namespace = descriptor.get("namespace") if isinstance(descriptor, dict) else None
        if not isinstance(name, str) or not name or (namespace is not None and not isinstance(namespace, str)):
            raise config_error(
                f"Input line {self.line_number} is a STREAM_STATUS trace without a valid "
                "`stream_status.stream_descriptor.name`."
            )
        status = body.get("status")
        return StreamStatus(name, namespace, status if isinstance(status, str) else "")

    def _record(self, message: dict, raw: bytes | str) -> Record:
        where = f"Input line {self.line_number}"
        record = message.get("record")
        if not isinstance(record, dict):
            raise config_error(f"{where} is a RECORD message whose `record` is {json_kind(record)}, not an object.")
        stream = record.get("stream")
        if not isinstance(stream, str) or not stream:
            raise config_error(f"{where} is a record without a stream name.")
        namespace = record.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise config_error(f"{where}: the record's namespace is {json_kind(namespace)}, not a string.")
        data = record.get("data")
        if not isinstance(data, dict):
            raise config_error(
                f"{where}: the record of stream {stream!r} has {json_kind(data)} as its data, not a JSON object; "
                "the source sent a malformed record."
            )
        if too_deep(raw, data):
            raise config_error(
                f"{where}: the record of stream {stream!r} is nested more than {MAX_DEPTH} levels deep, "
                "which cannot be stored: flatten it in the source or with a mapping."
            )
        emitted_at = record.get("emitted_at")
        changes = source_changes(record.get("meta"))
        if self.line_repaired:  # only a repaired line can hold them: orjson refuses NaN and Infinity
            # NaN and Infinity (which Python's json.dumps writes by default) are not JSON: no output
            # can hold them, so they are stored as NULL and the record says which fields lost them.
            for key in list(data):
                data[key], nulled = without_non_finite(data[key])
                if nulled:
                    changes = (changes or []) + [
                        {"field": key, "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"}
                    ]
        if isinstance(emitted_at, bool) or not isinstance(emitted_at, (int, float)) or emitted_at != emitted_at:
            if emitted_at is not None:  # a value that is not a time at all: say that it was replaced
                changes = (changes or []) + [EXTRACTED_AT_REPLACED]
            emitted_at = 0
        elif 0 < emitted_at < SECONDS_NOT_MILLISECONDS:
            # The protocol says milliseconds, but some senders (PyAirbyte writing from its cache)
            # send seconds: a value this small would be January 1970 in milliseconds.
            emitted_at *= 1000
        if not EMITTED_AT_RANGE[0] <= emitted_at <= EMITTED_AT_RANGE[1]:
            emitted_at = 0  # the pipeline stamps the time of arrival
            changes = (changes or []) + [EXTRACTED_AT_REPLACED]
        return Record(stream, data, int(emitted_at), namespace, changes)


def parse_message_objects(messages: Iterable[Mapping[str, Any]]) -> Iterator[Record | State | StreamStatus]:
    """Messages handed over in process as JSON objects (the CDK's, dumped), written and read again by
    the same parser as stdin, so that both entry points accept, repair and refuse exactly the same."""
    return InputParser().parse(_message_line(message) for message in messages)


def _message_line(message: Mapping[str, Any]) -> bytes | str:
    try:
        return orjson.dumps(message)
    except TypeError:
        # An integer past 64 bits, which orjson refuses to write: the standard writer writes it, and
        # the parser repairs it as it would on stdin, instead of the sync failing on a TypeError.
        return json.dumps(message)


def source_changes(meta: Any) -> list | None:
    """The source's `meta.changes` (a field it nulled or truncated), kept so that the row says so.
    Entries that are not of the protocol's shape are dropped: they cannot be told apart from noise."""
    changes = meta.get("changes") if isinstance(meta, dict) else None
    if not isinstance(changes, list) or not changes:
        return None
    kept = [
        {"field": c["field"], "change": c["change"], "reason": c["reason"]}
        for c in changes
        if isinstance(c, dict)
        and isinstance(c.get("field"), str)
        and isinstance(c.get("change"), str)
        and c["change"] in CHANGE_KINDS
        and isinstance(c.get("reason"), str)
    ]
    return kept or None


def check_records(messages: Iterable[Record | State], known: set[tuple[str | None, str]]) -> Iterator[Record | State]:
    """Records must belong to a stream of the catalog and carry an object: the same checks for
    messages parsed from stdin and for messages handed over in process."""
    count = 0
    for message in messages:
        if type(message) is Record:
            count += 1
            record = message
            key = (record.namespace or None, record.stream)
            if key not in known:
                label = f"{record.namespace}.{record.stream}" if record.namespace else record.stream
                raise config_error(
                    f"Record {count} belongs to stream {label!r}, which is not in the configured catalog: "
                    "add the stream to the connection, or check the source's stream names and namespaces."
                )
            if not isinstance(record.data, dict):
                raise config_error(
                    f"Record {count} of stream {record.stream!r} has {json_kind(record.data)} as its data, "
                    "not a JSON object."
                )
        elif type(message) is StreamStatus and (message.status != "COMPLETE" or message.key not in known):
            # STARTED, RUNNING and INCOMPLETE change nothing here; a status for a stream this sync
            # does not write has nothing to complete.
            continue
        yield message
