"""`destination-mistral load --config C --file F`: a JSON Lines or CSV file of plain records through
the same write path as `write`.

The file is read twice. The first pass checks every line, infers the schema and the primary key, and
checks a --state against the file, all before anything is written: bad input stops the load with
the output as it was. The second pass builds the protocol messages (records, a STATE every
--state-every records, the stream's COMPLETE status and a last STATE) and hands them to
sync/runner.write_messages, whose STATE lines go to stdout as `write` prints them; a summary for the
person at the terminal goes to stderr."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from destination_mistral.local_files.inference import Inference, csv_value, describe_columns, single_types
from destination_mistral.local_files.records import LocalFile, Row, RowReader, open_local_file
from destination_mistral.local_files.resume import Digest, ResumePoint, load_state, read_resume_point, records_in
from destination_mistral.protocol.catalog import Catalog, catalog_from_json
from destination_mistral.protocol.describe import first_line
from destination_mistral.protocol.files import read_config
from destination_mistral.protocol.masking import mask, register_secrets
from destination_mistral.protocol.messages import Record, State, StreamStatus
from destination_mistral.settings import parse_config
from destination_mistral.settings.key_masking import config_secrets
from mistral_connection.errors import config_error

logger = logging.getLogger("airbyte")

SYNC_MODES = ("append", "append_dedup", "overwrite")
STATE_EVERY = 1000  # records between two STATEs: a rerun after a failure sends again at most this many


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def parse_load_args(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="destination-mistral load",
        description="Enrich and store the records of a JSON Lines or CSV file, as `write` does with a source's.",
    )
    parser.add_argument("--config", required=True, help="the destination's JSON configuration file")
    parser.add_argument("--file", required=True, help="a .csv or .jsonl file of records, one per row or line")
    parser.add_argument("--stream", help="the stream (table) name; default: the file's name without its suffix")
    parser.add_argument(
        "--primary-key",
        action="append",
        help="the key column(s), comma-separated or repeated; default: `id` when every record has one",
    )
    parser.add_argument(
        "--sync-mode", choices=SYNC_MODES, help="default: append_dedup with a primary key, append without"
    )
    parser.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file's suffix")
    parser.add_argument("--schema", help="a JSON schema file for the records, instead of inferring one")
    parser.add_argument("--state", help="the saved stdout of an earlier load of this file: resume after its last STATE")
    parser.add_argument(
        "--state-every", type=positive, default=STATE_EVERY, help=f"records between STATEs (default {STATE_EVERY})"
    )
    return parser.parse_args(args)


@dataclass
class LoadPlan:
    source: LocalFile
    stream: str
    json_schema: dict[str, Any]
    primary_key: list[str]
    sync_mode: str
    rows: int
    digest: str  # of every record, from the first pass: the second must read the same file
    resume: ResumePoint | None
    generation_id: int

    @property
    def skipped(self) -> int:
        return self.resume.records if self.resume is not None else 0

    def catalog(self) -> Catalog:
        entry = {
            "stream": {"name": self.stream, "json_schema": self.json_schema, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh",
            "destination_sync_mode": self.sync_mode,
            "primary_key": [[name] for name in self.primary_key] or None,
            # The load's own generation (kept by a resumed load) with it as the sync's id, so that an
            # overwrite resumes its staging table, and a load already swapped in is not emptied.
            "generation_id": self.generation_id,
            "minimum_generation_id": 0,
            "sync_id": self.generation_id,
        }
        return catalog_from_json({"streams": [entry]}, f"built for {self.source.shown}")

    def messages(self, state_every: int) -> Iterator[Record | State | StreamStatus]:
        emitted_at = int(time.time() * 1000)
        types = single_types(self.json_schema) if self.source.format == "csv" else None
        digest = Digest()
        for row in RowReader(self.source):
            digest.add(row.raw)
            if digest.records < self.skipped:
                continue
            if digest.records == self.skipped:
                self._check_unchanged(digest, self.resume.digest)
                continue
            yield Record(self.stream, typed(row, types), emitted_at, None, row.changes)
            if digest.records % state_every == 0 and digest.records < self.rows:
                yield load_state(self.stream, self.source.path.name, digest, self.generation_id)
        self._check_unchanged(digest, self.digest)
        yield StreamStatus(self.stream, None, "COMPLETE")
        yield load_state(self.stream, self.source.path.name, digest, self.generation_id)

    def _check_unchanged(self, digest: Digest, expected: str) -> None:
        if digest.hexdigest() != expected:
            raise config_error(
                f"{self.source.shown}: the file changed while it was being loaded: run the load again "
                "once nothing writes to it."
            )


def typed(row: Row, types: dict[str, str | None] | None) -> dict[str, Any]:
    if types is None:
        return row.fields
    return {name: csv_value(text, types.get(name)) for name, text in row.fields.items()}


def survey(parsed: argparse.Namespace) -> LoadPlan:
    """The first pass: every line checked, the schema and key settled, a --state matched to the file."""
    source = open_local_file(parsed.file, parsed.format)
    stream = parsed.stream or source.path.stem
    resume = read_resume_point(parsed.state, stream) if parsed.state else None
    reader = RowReader(source)
    inference = Inference(from_csv=source.format == "csv")
    digest = Digest()
    matched = resume is None or resume.records == 0
    for row in reader:
        inference.add(row)
        digest.add(row.raw)
        if not matched and digest.records == resume.records:
            matched = digest.hexdigest() == resume.digest
            if not matched:
                break
    if not matched:
        raise config_error(
            f"{source.shown}: its first {resume.records} records are not the ones the STATE in --state "
            f"{parsed.state} covers (the file changed, or it is another file): leave --state out to load the "
            "whole file."
        )
    json_schema = read_schema(parsed.schema) if parsed.schema else inference.json_schema()
    columns = list(json_schema.get("properties") or {})
    seen: dict[str, str] = {}
    for name in columns:
        other = seen.setdefault(name.lower(), name)
        if other != name:
            # The outputs compare column names without case: one of the two would not be stored.
            raise source.problem(
                1 if source.format == "csv" and not parsed.schema else None,
                f"columns {other!r} and {name!r} differ only by letter case, and the outputs compare column names "
                "without case",
                "rename one of them",
            )
    keys = [name.strip() for given in parsed.primary_key or () for name in given.split(",") if name.strip()]
    keys = keys or [name for name in inference.default_key() if name in columns]
    for name in keys:
        if name not in columns:
            where = f"the schema in {parsed.schema}" if parsed.schema else "the file"
            raise source.problem(
                1 if source.format == "csv" and not parsed.schema else None,
                f"primary key column {name!r} is not in {where} (columns: {', '.join(columns)})",
                "pass --primary-key with one of them",
            )
    mode = parsed.sync_mode or ("append_dedup" if keys else "append")
    if mode == "append_dedup":
        if not keys:
            raise source.problem(
                None,
                "append_dedup needs a primary key, and not every record has an `id`",
                "pass --primary-key COLUMN, or --sync-mode append",
            )
        for name in keys:
            line = inference.first_line_without(name)
            if line is not None:
                # Such a record could never be matched again, so a rerun would store it twice.
                raise source.problem(
                    line,
                    f"the record has no value for primary key {name!r}",
                    "fill it in, or pass --sync-mode append (each record a row of its own)",
                )
    generation = resume.generation_id if resume is not None else int(time.time() * 1000)
    return LoadPlan(source, stream, json_schema, keys, mode, reader.rows, digest.hexdigest(), resume, generation)


def read_schema(path_text: str) -> dict[str, Any]:
    try:
        schema = orjson.loads(Path(path_text).read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        raise config_error(f"--schema {path_text}: the file cannot be read as JSON ({first_line(error)}).") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        raise config_error(
            f"--schema {path_text}: pass a JSON schema with a `properties` object naming the records' fields, "
            'e.g. {"type": "object", "properties": {"id": {"type": "integer"}}}.'
        )
    return schema


def run_load_command(args: list[str]) -> None:
    from destination_mistral.protocol.stdout import write_message
    from destination_mistral.sync.runner import prepare_process, write_messages

    prepare_process()  # as `write` does
    parsed = parse_load_args(args)
    plan: LoadPlan | None = None
    stored = 0
    try:
        config = read_config(parsed.config)
        register_secrets(config_secrets(config))
        plan = survey(parsed)
        stored = plan.skipped
        logger.info("Begin writing to the destination...")
        for message in write_messages(config, plan.catalog(), plan.messages(parsed.state_every)):
            write_message(message)
            stored = records_in(message) or stored
        logger.info("Writing complete.")
    except BaseException as error:
        print(failure_report(error, plan, stored), file=sys.stderr, flush=True)
        raise
    print(summary(plan, config), file=sys.stderr, flush=True)


def failure_report(error: BaseException, plan: LoadPlan | None, stored: int) -> str:
    reason = getattr(error, "message", None) or first_line(error) or type(error).__name__
    lines = [f"destination-mistral load: {mask(reason)}"]
    if plan is None:
        lines.append("  Nothing was written.")
    else:
        lines.append(
            f"  {stored} of the {plan.rows} records of {plan.source.shown} are stored, as the last STATE on stdout "
            "says. Rerun with --state and that output saved to a file to go on after them; without --state the "
            "whole file is sent again (append_dedup replaces rows by key, and answers already paid for come "
            "from the cache)."
        )
    return "\n".join(lines)


def summary(plan: LoadPlan, config: dict[str, Any]) -> str:
    output = parse_config(config).output
    # Outputs that are not a local path (a server) name themselves by `location`, without a password.
    where = getattr(output, "location", None) or str(output.path)
    key = f", primary key {', '.join(plan.primary_key)}" if plan.primary_key else ""
    lines = [
        f"destination-mistral load: {plan.rows} records of {plan.source.shown} are in stream {plan.stream!r} "
        f"({plan.sync_mode}{key}) of {output.kind} output {mask(where)}.",
        f"  Columns: {describe_columns(plan.json_schema)}.",
    ]
    if plan.skipped:
        lines.append(f"  The first {plan.skipped} were stored by the earlier load --state names, and not sent again.")
    return "\n".join(lines)
