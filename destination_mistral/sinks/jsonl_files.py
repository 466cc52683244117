"""The files beneath the JSON Lines output: the check that the directory can be written, file names
that fit a file system, writes that are whole or undone, a file replaced atomically, and the partial
line a failed write may leave."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import orjson

from destination_mistral.settings import OutputSettings
from mistral_connection.errors import config_error

logger = logging.getLogger("airbyte")

# File systems cap a name at 255 bytes; the suffixes added here (".jsonl.generation") need room too.
MAX_NAME_BYTES = 200


# The files a sync opens beside the streams' files: the cache (jsonl_sink.CACHE_FILE) and its log.
_CACHE_FILES = ("_mistral_cache.duckdb", "_mistral_cache.duckdb.wal")


def check_writable(output: OutputSettings) -> None:
    """Raises a config error naming `output.directory` when a sync could not write there: a new file
    in the directory, and every file already there that a sync opens for writing (the streams'
    `.jsonl` files, also under a namespace's directory, and the cache), each opened for appending
    without writing to it. `check` and every sync run it."""
    path = output.path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".destination-mistral-check"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise config_error(f"`output.directory` {str(path)!r} is not writable: {error.strerror or error}.") from None
    existing = [*path.glob("*.jsonl"), *path.glob("*/*.jsonl"), *(path / name for name in _CACHE_FILES)]
    for target in existing:
        try:
            if target.exists() or target.is_symlink():
                with open(target, "ab"):
                    pass
        except OSError as error:
            raise config_error(
                f"`output.directory` {str(path)!r} holds {target.relative_to(path)}, which this sync must write but "
                f"cannot ({error.strerror or error}): give the connector's user write access to it, or choose "
                "another directory."
            ) from None


def safe_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).lstrip(".") or "_"
    if len(cleaned.encode()) <= MAX_NAME_BYTES:
        return cleaned
    # A long name keeps a readable start and a digest of the whole, so that two long names that
    # share their start still get files of their own.
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    start = cleaned.encode()[: MAX_NAME_BYTES - 17].decode(errors="ignore")
    return f"{start}-{digest}"


def read_lines(path: Path) -> Iterable[bytes]:
    """The file's non-blank lines, each ending in a newline; nothing when there is no file."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield line if line.endswith(b"\n") else line + b"\n"


def first_line_fields(path: Path) -> list[str]:
    """The fields of the file's first row, as a table's columns: none when there is no file, no row,
    or a first line that is not an object (a partial line a failed write left). The file is found
    without case, as streams are told apart (on macOS and Windows volumes they would be one file)."""
    for line in read_lines(_any_case(path)):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            return []
        return list(row) if isinstance(row, dict) else []
    return []


def _any_case(path: Path) -> Path:
    """The existing path equal to `path` without case, its folders included (a namespace's folder
    `Foo` is `foo`); `path` itself when there is none."""
    if path.exists() or path.parent == path:
        return path
    parent = _any_case(path.parent)
    if parent.is_dir():
        for other in parent.iterdir():
            if other.name.lower() == path.name.lower():
                return other
    return path


def replace_file(target: Path, lines: Iterable[bytes]) -> None:
    """Writes `lines` as the new content of `target` through a temporary copy and an atomic rename,
    so that a crash leaves either the old or the new file, never a half-written one."""
    temporary = target.with_suffix(".jsonl.tmp")
    with open(temporary, "wb") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def write_all(handle, data: bytes) -> None:
    """Files are opened unbuffered, so that nothing is left in a buffer for close() to write after
    a failed commit was cut back; a raw write may take only part of the bytes."""
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError(28, "No space left on device (nothing could be written)")
        view = view[written:]


def truncate_quietly(handle: IO[bytes], size: int) -> None:
    try:
        handle.seek(size)
        handle.truncate(size)
    except (OSError, ValueError):
        pass  # the next start drops the partial line (see drop_partial_last_line)


def drop_partial_last_line(path: Path) -> None:
    """A file left by a write that failed half way (a full disk, a killed process) may end in a
    partial line, which no STATE covers: it is cut before this sync appends its first line."""
    try:
        with open(path, "rb+") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end == 0:
                return
            handle.seek(end - 1)
            if handle.read(1) == b"\n":
                return
            position = end
            while position > 0:
                step = min(65536, position)
                handle.seek(position - step)
                chunk = handle.read(step)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    position = position - step + newline + 1
                    break
                position -= step
            handle.truncate(position)
            logger.warning(f"{path.name} ended in a partial line left by an earlier failed write; it was removed.")
    except FileNotFoundError:
        return
