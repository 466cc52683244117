"""The rows of a local JSON Lines or CSV file, each with the line it starts on.

A file on a person's disk is edited by hand or exported from a spreadsheet, so whatever is wrong with
it is refused with the file, the line and what to change; messages name fields and lines, never a
value (records may hold personal data)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from destination_mistral.protocol.describe import first_line, json_kind
from destination_mistral.protocol.repair import MAX_DEPTH, scrub, too_deep, without_non_finite
from mistral_connection.errors import config_error

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
BOM = b"\xef\xbb\xbf"
# A CSV cell may hold a whole document; the csv module's default cap (128 KiB) would refuse it.
MAX_CSV_FIELD = 64 * 1024 * 1024
CSV_QUOTING = 'quote a value that holds commas, quotes or line breaks ("a, b"), doubling the quotes inside it'
ONE_OBJECT_PER_LINE = 'write one JSON object per line, e.g. {"id": 1, "review": "Great sound"}'
JSON_POSITION = re.compile(r": line \d+ column (\d+) \(char \d+\)")
PROTOCOL_TYPES = frozenset({"RECORD", "STATE", "TRACE", "LOG"})


@dataclass(frozen=True)
class LocalFile:
    path: Path
    shown: str  # the path as the user typed it, which is how errors name the file
    format: str  # csv | jsonl

    def problem(self, line: int | None, what: str, fix: str):
        where = f"{self.shown}, line {line}" if line else self.shown
        return config_error(f"{where}: {what}: {fix}.")


@dataclass
class Row:
    line: int  # where the record starts (a quoted CSV value may span lines)
    fields: dict[str, Any]  # CSV: the header's names to the cells' text; JSONL: the object read
    raw: bytes  # what the resume digest hashes: the JSON line, or the CSV row's cells
    changes: list | None = field(default=None)  # NaN or Infinity stored as NULL, as `write` names them


def open_local_file(path_text: str, format_name: str | None) -> LocalFile:
    path = Path(path_text)
    shown = path_text
    if not path.exists():
        raise config_error(f"{shown}: no such file: check the path (a relative path starts from {Path.cwd()}).")
    if not path.is_file():
        raise config_error(f"{shown}: not a regular file: pass the path of a .csv or .jsonl file.")
    if format_name is None:
        format_name = FORMATS.get(path.suffix.lower())
        if format_name is None:
            raise config_error(
                f"{shown}: the format cannot be told from the file's name: pass --format csv or --format jsonl."
            )
    source = LocalFile(path, shown, format_name)
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise source.problem(None, f"the file cannot be read ({error.strerror})", "check its permissions") from None
    if path.stat().st_size == 0:
        raise source.problem(None, "the file is empty", "export the records into it, or pass another file")
    return source


class RowReader:
    """One pass over the file's rows; for CSV, `columns` is the header once the pass has begun."""

    def __init__(self, source: LocalFile) -> None:
        self.source = source
        self.columns: list[str] = []
        self.rows = 0

    def __iter__(self) -> Iterator[Row]:
        rows = self._csv_rows() if self.source.format == "csv" else self._jsonl_rows()
        for row in rows:
            self.rows += 1
            yield row
        if not self.rows:
            what = "the file has a header but no records" if self.columns else "the file holds no records"
            raise self.source.problem(None, what, "add at least one record")

    def _jsonl_rows(self) -> Iterator[Row]:
        with self.source.path.open("rb") as lines:
            for number, raw in enumerate(lines, start=1):
                raw = raw.rstrip(b"\r\n")
                if number == 1 and raw.startswith(BOM):  # editors on Windows write one
                    raw = raw[len(BOM) :]
                if raw.strip():
                    yield self._json_row(number, raw)

    def _json_row(self, number: int, raw: bytes) -> Row:
        problem = self.source.problem
        repaired = False
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            # orjson counts lines and columns within the line it was given: only the column says more.
            reason = JSON_POSITION.sub(r" at column \1", first_line(error))
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise problem(number, f"byte {bad.start + 1} is not UTF-8", "save the file as UTF-8") from None
            # NaN and Infinity (Python's json.dumps writes them) and integers past 64 bits are read
            # as `write` reads them: stored as NULL and named in _airbyte_meta, not refused.
            try:
                value = scrub(json.loads(text))
            except RecursionError:
                raise problem(number, f"the record is nested more than {MAX_DEPTH} levels deep", "flatten it") from None
            except ValueError:
                raise problem(number, f"not valid JSON ({reason})", ONE_OBJECT_PER_LINE) from None
            repaired = True
        if not isinstance(value, dict):
            raise problem(number, f"the line holds {json_kind(value)}, not a JSON object", ONE_OBJECT_PER_LINE)
        if self.rows == 0 and value.get("type") in PROTOCOL_TYPES and len(value) > 1:
            raise problem(
                number,
                "the line is an Airbyte protocol message, not a plain record",
                "pipe protocol messages into `destination-mistral write --config ... --catalog ...`; "
                "`load` reads plain records",
            )
        if too_deep(raw, value):
            raise problem(number, f"the record is nested more than {MAX_DEPTH} levels deep", "flatten it")
        changes = None
        if repaired:
            for key in list(value):
                value[key], nulled = without_non_finite(value[key])
                if nulled:
                    changes = (changes or []) + [
                        {"field": key, "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"}
                    ]
        return Row(number, value, raw, changes)

    def _csv_rows(self) -> Iterator[Row]:
        csv.field_size_limit(MAX_CSV_FIELD)
        start = 1
        # utf-8-sig drops the byte order mark spreadsheets write; newline="" lets quoted values
        # hold line breaks.
        with self.source.path.open(encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text, strict=True)
            try:
                for cells in reader:
                    line, start = start, reader.line_num + 1
                    if not cells:
                        continue  # a blank line
                    if not self.columns:
                        self.columns = self._header(line, cells)
                        continue
                    if len(cells) != len(self.columns):
                        raise self.source.problem(
                            line,
                            f"the row has {len(cells)} fields where the header names {len(self.columns)}",
                            f"{CSV_QUOTING}, and give every row the header's number of fields",
                        )
                    yield Row(line, dict(zip(self.columns, cells, strict=True)), orjson.dumps(cells))
            except csv.Error as error:
                raise self.source.problem(start, f"not valid CSV ({first_line(error)})", CSV_QUOTING) from None
            except UnicodeDecodeError:
                raise self.source.problem(
                    self._first_line_not_utf8(), "the text is not UTF-8", "save the file as CSV UTF-8"
                ) from None

    def _header(self, line: int, cells: list[str]) -> list[str]:
        # Spaces around a name ("id, review") are the writer's layout, not part of the name.
        names = [cell.strip() for cell in cells]
        for index, name in enumerate(names):
            if not name:
                raise self.source.problem(
                    line, f"column {index + 1} of the header has no name", "name every column in the first row"
                )
            if name in names[:index]:
                raise self.source.problem(line, f"the header names column {name!r} twice", "rename one of them")
        return names

    def _first_line_not_utf8(self) -> int | None:
        """The text layer decodes in chunks, so the line is found again in the bytes."""
        with self.source.path.open("rb") as lines:
            for number, raw in enumerate(lines, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
        return None
