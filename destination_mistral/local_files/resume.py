"""The STATE messages a load emits, and how a rerun resumes from one.

A load's STATE says how many of the file's records are stored and holds a digest of them (their raw
lines, or CSV cells), so that a rerun given that STATE skips exactly those records, and refuses to
skip anything when the file's first records are no longer the ones stored. It also carries the
load's generation, so that an overwrite resumes its staging table instead of starting it again."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from destination_mistral.protocol.messages import State
from destination_mistral.protocol.state import state_message
from mistral_connection.errors import config_error


class Digest:
    """A running hash of the records read so far."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.records = 0

    def add(self, raw: bytes) -> None:
        # The length first, so that two records never hash as one with their bytes run together.
        self._hash.update(len(raw).to_bytes(8, "big"))
        self._hash.update(raw)
        self.records += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclass(frozen=True)
class ResumePoint:
    records: int
    digest: str
    generation_id: int


def load_state(stream: str, file_name: str, digest: Digest, generation_id: int) -> State:
    """The STATE after `digest.records` records of the file, as a source's per-stream STATE."""
    state = {
        "type": "STREAM",
        "stream": {
            "stream_descriptor": {"name": stream},
            "stream_state": {
                "file": file_name,
                "records": digest.records,
                "digest": digest.hexdigest(),
                "generation_id": generation_id,
            },
        },
    }
    return State({"type": "STATE", "state": state}, state_message(state))


def records_in(message: Any) -> int | None:
    """How many records a STATE the runner released covers (None for another message)."""
    point = _point(message, None)
    return point.records if point is not None else None


def read_resume_point(path_text: str, stream: str) -> ResumePoint:
    """The last STATE of stream `stream` in the file: the saved output of an earlier load (its lines
    on stdout), or one STATE message."""
    try:
        text = Path(path_text).read_bytes()
    except OSError as error:
        raise config_error(
            f"--state {path_text}: the file cannot be read ({error.strerror or error}): "
            "pass the file an earlier load's output was saved in."
        ) from None
    try:
        messages = [orjson.loads(text)]  # one message, maybe spread over several lines
    except orjson.JSONDecodeError:
        messages = []
        for line in text.splitlines():
            try:
                messages.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # stderr mixed in, or a line cut short by a kill
    points = [point for point in (_point(m, stream) for m in messages) if point is not None]
    if not points:
        raise config_error(
            f"--state {path_text}: the file holds no STATE of a load of stream {stream!r}: pass the saved "
            "output of an earlier `destination-mistral load` of the same file and stream, or leave --state "
            "out to load the whole file."
        )
    return points[-1]


def _point(message: Any, stream: str | None) -> ResumePoint | None:
    state = message.get("state") if isinstance(message, dict) and message.get("type") == "STATE" else None
    if not isinstance(state, dict) or state.get("type") != "STREAM":
        return None
    entry = state.get("stream")
    descriptor = entry.get("stream_descriptor") if isinstance(entry, dict) else None
    if not isinstance(descriptor, dict) or descriptor.get("namespace"):
        return None
    if stream is not None and descriptor.get("name") != stream:
        return None
    blob = entry.get("stream_state")
    if not isinstance(blob, dict):
        return None
    records, digest, generation = blob.get("records"), blob.get("digest"), blob.get("generation_id")
    if not all(type(value) is int and value >= 0 for value in (records, generation)) or not isinstance(digest, str):
        return None
    return ResumePoint(records, digest, generation)
