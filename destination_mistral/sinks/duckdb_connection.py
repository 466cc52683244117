"""Opening a DuckDB database for the destination (the DuckDB output, a MotherDuck database, or the
JSONL output's cache): the errors that make a config error, the storage version a new file is
written in, and the settings a sync runs with (UTC, threads, buffer pool, checkpoints,
compression). Also the check that `output.path` can be written."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import duckdb

from destination_mistral.settings import OutputSettings, mask_error
from destination_mistral.settings.typed import is_motherduck_path
from mistral_connection.errors import config_error, transient_error

logger = logging.getLogger("airbyte")

MEMORY_LIMIT = "192MB"
CHECKPOINT_THRESHOLD = "64MB"
ROOMY_MEMORY_LIMIT = "4GB"
# The output being opened: the sinks call connect(path), and the storage version and MotherDuck
# token of that output come from here (set by sinks.open_sink and check_writable).
_OPENING: ContextVar[OutputSettings | None] = ContextVar("destination_mistral_duckdb_output", default=None)
_DEFAULT_OUTPUT = OutputSettings(kind="duckdb", path=None)


@contextmanager
def opening(output: OutputSettings) -> Iterator[None]:
    """Every connect() inside opens its database with `output`'s settings."""
    token = _OPENING.set(output)
    try:
        yield
    finally:
        _OPENING.reset(token)


def connect(path: Path, output: OutputSettings | None = None):
    """A connection to the DuckDB file at `path` (created in `output.storage_version` if missing),
    or to MotherDuck when `path` is `md:<database>`."""
    output = output or _OPENING.get() or _DEFAULT_OUTPUT
    con = _open_motherduck(path, output) if is_motherduck_path(str(path)) else _open_file(path, output)
    _tune(con)
    return con


def _open_file(path: Path, output: OutputSettings):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Applies to a file this creates; an existing file keeps the format it was written in.
        con = duckdb.connect(str(path), config={"storage_compatibility_version": output.storage_version})
    except duckdb.InvalidInputException as error:
        if "version" not in str(error).lower():
            raise
        raise config_error(
            f"`output.storage_version` {output.storage_version!r} is not a DuckDB version the installed DuckDB "
            f"{duckdb.__version__} knows: give one such as v1.0.0 (read by every DuckDB 1.x), or latest."
        ) from None
    except duckdb.IOException as error:
        text = str(error)
        if "lock" in text.lower():
            # A lock lasts as long as the other process holds the file: a retry later can succeed.
            raise transient_error(
                f"The DuckDB file {str(path)!r} is open in another process (DuckDB allows one writer): nothing was "
                "written; close it there, and the sync can be retried."
            ) from None
        raise config_error(
            f"`{_field(output)}` {str(path)!r} cannot be opened as a DuckDB file: {text.splitlines()[0]}"
        ) from None
    except (OSError, duckdb.Error) as error:
        raise config_error(
            f"`{_field(output)}` {str(path)!r} cannot be written: {str(error).splitlines()[0]}"
        ) from None
    _warn_newer_format(con, path, output.storage_version)
    return con


def _field(output: OutputSettings) -> str:
    """The field a file's error names: the JSONL output's cache lives in `output.directory`."""
    return "output.directory" if output.kind == "jsonl" else "output.path"


def _open_motherduck(path: Path, output: OutputSettings):
    """MotherDuck through DuckDB's motherduck extension (which DuckDB downloads on first use). The
    token goes in the connection's config, never in the path that messages quote."""
    config = {"motherduck_token": output.motherduck_token} if output.motherduck_token else {}
    try:
        return duckdb.connect(str(path), config=config)
    except duckdb.Error as error:
        text = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
        if any(word in str(error).lower() for word in ("download", "establish connection", "network", "resolve")):
            failure = transient_error(
                f"MotherDuck could not be reached for {str(path)!r} ({text}): this machine needs access to the "
                "internet (DuckDB downloads its motherduck extension, then connects to MotherDuck)."
            )
        else:
            failure = config_error(
                f"MotherDuck refused to open {str(path)!r} ({text}): check `output.motherduck_token` and the "
                "database name in `output.path`."
            )
        mask_error(failure, *output.secrets)
        raise failure from None


def _tune(con) -> None:
    con.execute("SET TimeZone = 'UTC'")
    # Half the cores, at least one: the sync's own appends and joins gain little from more, and the
    # pipeline (and, on a shared machine, the source and the API) need the rest. On 2 cores, one
    # DuckDB thread made a 20,000-vector sync 15% faster than two.
    con.execute(f"SET threads = {max(1, (os.cpu_count() or 2) // 2)}")
    # DuckDB's buffer pool defaults to 80% of RAM; the destination shares its machine with the
    # source, and pages it evicts are re-read from the file when needed.
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    # At the default 16 MB the write-ahead log fills every commit or two (a vector is 4 KB, written
    # to the table and to the cache), and each checkpoint rewrites the partly filled row groups
    # again. It stays well below the buffer pool: DuckDB holds every long string (a record's JSON,
    # a chunk's text) written since the last checkpoint in memory, and a threshold above the pool
    # made the commits of a few thousand long records fail. Committed transactions are durable in
    # the log either way.
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    # Embeddings are dense floats that no method compresses, yet at each checkpoint DuckDB tries
    # them all: ALP on every FLOAT[n] segment and dict_fsst on every 4 KB cache blob. Measured on
    # 20,000 vectors of 1024 floats, closing the file took 1.3 s with them and 0.4 s without, for a
    # file 2% larger. Text columns keep dictionary and FSST compression.
    for methods in ("alp,alprd,dict_fsst", "alp,alprd"):  # dict_fsst exists from DuckDB 1.3
        try:
            con.execute(f"SET disabled_compression_methods = '{methods}'")
            break
        except duckdb.Error:
            continue


def _warn_newer_format(con, path: Path, wanted: str) -> None:
    """An existing file keeps its format: one written in a newer one than `wanted` (by an earlier
    version of this connector) is said so, since the readers the setting is for will refuse it."""
    if wanted == "latest":
        return
    try:
        tags = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    except duckdb.Error:
        return  # a DuckDB without the tags column: nothing to compare
    written = str((tags[0] or {}).get("storage_version", "")).rstrip("+") if tags else ""
    if written and _release(written) > _release(wanted):
        logger.warning(
            f"The DuckDB file {str(path)!r} is in storage format {written}, newer than `output.storage_version` "
            f"{wanted}, which applies only to new files: DuckDB releases before {written} cannot open it. To convert "
            f"it, ATTACH a new file with (STORAGE_VERSION '{wanted}') and COPY FROM DATABASE into it."
        )


def _release(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.lstrip("v").split("."))
    except ValueError:
        return ()


def check_writable(output: OutputSettings) -> None:
    with opening(output):
        con = connect(output.path)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS _mistral_check (x INTEGER)")
        con.execute("DROP TABLE _mistral_check")
    except Exception as error:
        con.close()
        raise config_error(
            f"`output.path` {str(output.path)!r} is not writable: {str(error).splitlines()[0]}"
        ) from None
    # The schema the streams' tables go to, created as `write` creates it, then rolled back.
    quoted = '"' + output.schema.replace('"', '""') + '"'
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        con.execute(f"CREATE TABLE {quoted}._mistral_check (x INTEGER)")
    except duckdb.Error as error:
        raise config_error(
            f"`output.schema` {output.schema!r} cannot hold the streams' tables ({str(error).splitlines()[0]}): "
            "choose another schema name."
        ) from None
    finally:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        con.close()
